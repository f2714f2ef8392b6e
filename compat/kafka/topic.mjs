// Workaround for tansu: tansu 0.6.0 does not create a topic on first use (its Metadata handler
// ignores allow_auto_topic_creation and answers UNKNOWN_TOPIC_OR_PARTITION), while Apache
// Kafka's default auto.create.topics.enable=true is what the seed relies on. So the topic is
// created first if missing, with the broker's default partitions, which is what auto-creation
// would do. KAFKA_CREATE_TOPIC=0 skips this.
export async function ensureTopic (kafka, topic) {
  if (process.env.KAFKA_CREATE_TOPIC === '0') return
  const admin = kafka.admin()
  await admin.connect()
  try {
    if (!(await admin.listTopics()).includes(topic)) {
      await admin.createTopics({ topics: [{ topic }], waitForLeaders: true })
    }
  } finally {
    await admin.disconnect()
  }
}
