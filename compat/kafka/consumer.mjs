// The course material's kafkajs consumer ("Uso en Node.js" > "Consumer"), kept as written:
// clientId 'my-app', a consumer group, subscribe fromBeginning: true, eachMessage with the
// default auto-commit. Changes, all outside the seed's logic:
//   - brokers from KAFKA_BROKERS (comma-separated, default 'localhost:9092');
//   - groupId from GROUP (default 'user-service'), topic from TOPIC (default 'user-events');
//   - instead of console.log('Received event:', event), each message is printed as one JSON
//     line on stdout: {"topic","partition","offset","key","value"} (key and value as strings,
//     offset as a number), so a test can read it whatever the value is;
//   - with COUNT set, exit 0 after COUNT messages, having committed their offsets and left
//     the group (consumer.disconnect()); without COUNT, run until killed;
//   - exit 1 with a one-line message on stderr if no message arrives for TIMEOUT_MS
//     (default 30000, counted from the start and again after each message; 0 = never);
//   - the topic is created first if missing (tansu does not auto-create; see topic.mjs);
//   - fetch max wait FETCH_MAX_WAIT_MS (default 500) instead of 5000 (tansu; see below);
//   - kafkajs logs only WARN/ERROR.
// Env KAFKA_CREATE_TOPIC=0 skips creating the topic.
import { Kafka, logLevel } from 'kafkajs'
import { ensureTopic } from './topic.mjs'

const brokers = (process.env.KAFKA_BROKERS || 'localhost:9092').split(',').map((b) => b.trim()).filter(Boolean)
const topic = process.env.TOPIC || 'user-events'
const groupId = process.env.GROUP || 'user-service'
const count = process.env.COUNT ? Number(process.env.COUNT) : Infinity
const timeoutMs = process.env.TIMEOUT_MS !== undefined && process.env.TIMEOUT_MS !== '' ? Number(process.env.TIMEOUT_MS) : 30000

function fail (text) {
  console.error(`consumer.mjs: ${String(text).replace(/\s+/g, ' ')}`)
  process.exit(1)
}

if (!(count > 0)) fail(`COUNT must be a positive number, not ${process.env.COUNT}`)

// Workaround for tansu: tansu 0.6.0 answers every Fetch only after sleeping half of the
// request's max_wait_ms, even when records are already there (storage/src/service/fetch.rs:
// the poll loop sleeps before checking min_bytes). With kafkajs's default maxWaitTimeInMs of
// 5000 every fetch round then takes 2.5 s, and disconnect() waits for the fetch in flight.
// FETCH_MAX_WAIT_MS (default 500, librdkafka's default) keeps that to 250 ms; it changes only
// how long the broker may hold an empty fetch, not what is consumed.
const maxWaitTimeInMs = process.env.FETCH_MAX_WAIT_MS ? Number(process.env.FETCH_MAX_WAIT_MS) : 500

const kafka = new Kafka({
  clientId: 'my-app',
  brokers,
  logLevel: logLevel.WARN
})

const consumer = kafka.consumer({ groupId, maxWaitTimeInMs })

let received = 0
let stopping = null // the disconnect() promise, once COUNT messages are in
let signalStopping
const stoppingStarted = new Promise((resolve) => { signalStopping = resolve })
let timer = null

function armTimer () {
  if (!(timeoutMs > 0)) return
  clearTimeout(timer)
  timer = setTimeout(async () => {
    const want = count === Infinity ? '' : ` of ${count}`
    console.error(`consumer.mjs: timeout: no message for ${timeoutMs} ms (received ${received}${want}) on topic ${topic}, group ${groupId}`)
    // Leave the group if the broker lets us within a few seconds; exit 1 either way.
    await Promise.race([consumer.disconnect().catch(() => {}), new Promise((resolve) => setTimeout(resolve, 5000))])
    process.exit(1)
  }, timeoutMs)
}

// A non-retriable crash (kafkajs gives up restarting the consumer) is a failure too.
consumer.on(consumer.events.CRASH, ({ payload }) => {
  if (payload && payload.restart === false) fail(`crashed: ${payload.error && payload.error.message}`)
})

try {
  armTimer()
  await ensureTopic(kafka, topic)
  await consumer.connect()
  await consumer.subscribe({ topic, fromBeginning: true })

  await consumer.run({
    eachMessage: async ({ topic, partition, message }) => {
      if (stopping) return // not reached: disconnect stops the runner before the next message
      received++
      console.log(JSON.stringify({
        topic,
        partition,
        offset: Number(message.offset),
        key: message.key === null ? null : message.key.toString(),
        value: message.value === null ? null : message.value.toString()
      }))
      armTimer()
      if (received >= count) {
        clearTimeout(timer)
        // Not awaited here: disconnect() waits for this eachMessage to return. Calling it
        // now stops the runner at once, so no message past COUNT is handed out; the runner
        // then resolves this message's offset, commits at the end of the batch and leaves.
        stopping = consumer.disconnect()
        signalStopping()
      }
    }
  })
} catch (err) {
  fail(`${err && err.name ? err.name + ': ' : ''}${err && err.message ? err.message : err}`)
}

if (count !== Infinity) {
  // run() returns once the group is joined; wait for COUNT messages and the disconnect.
  await stoppingStarted
  try {
    await stopping
  } catch (err) {
    fail(`disconnect: ${err && err.message ? err.message : err}`)
  }
  process.exit(0)
}
