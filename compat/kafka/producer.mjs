// The course material's kafkajs producer ("Uso en Node.js" > "Producer"), kept as written:
// same clientId, topic, message key and event shape. Changes, all outside the seed's logic:
//   - brokers from KAFKA_BROKERS (comma-separated, default 'localhost:9092');
//   - topic from TOPIC (default 'user-events');
//   - with CHAT_MESSAGE set, the value is a charla chat message instead of the user event:
//     {usuario:'kafkajs', mensaje, hora, id, room, ts_us};
//   - kafkajs logs only WARN/ERROR, and its one-time v2 partitioner notice is silenced;
//   - the topic is created first if missing (tansu does not auto-create; see topic.mjs);
//   - exit 0 after disconnect, or 1 with a one-line error on stderr.
import { randomBytes } from 'node:crypto'
import { Kafka, logLevel } from 'kafkajs'
import { ensureTopic } from './topic.mjs'

process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1'

const brokers = (process.env.KAFKA_BROKERS || 'localhost:9092').split(',').map((b) => b.trim()).filter(Boolean)
const topic = process.env.TOPIC || 'user-events'

// A ULID (48-bit millisecond time + 80 random bits, Crockford base32), like charla's ids.
function ulid () {
  const alphabet = '0123456789ABCDEFGHJKMNPQRSTVWXYZ'
  let time = Date.now()
  let out = ''
  for (let i = 0; i < 10; i++) {
    out = alphabet[time % 32] + out
    time = Math.floor(time / 32)
  }
  const rand = randomBytes(16)
  for (let i = 0; i < 16; i++) out += alphabet[rand[i] % 32]
  return out
}

function chatMessage (mensaje) {
  const now = new Date()
  const pad = (n) => String(n).padStart(2, '0')
  return {
    usuario: 'kafkajs',
    mensaje,
    hora: `${pad(now.getHours())}:${pad(now.getMinutes())}:${pad(now.getSeconds())}`,
    id: ulid(),
    room: topic,
    ts_us: now.getTime() * 1000
  }
}

try {
  const kafka = new Kafka({
    clientId: 'my-app',
    brokers,
    logLevel: logLevel.WARN
  })

  await ensureTopic(kafka, topic)

  const producer = kafka.producer()

  await producer.connect()

  // Enviar mensaje
  await producer.send({
    topic,
    messages: [
      {
        key: 'user-123',
        value: JSON.stringify(
          process.env.CHAT_MESSAGE !== undefined
            ? chatMessage(process.env.CHAT_MESSAGE)
            : {
                type: 'user_created',
                userId: 123,
                name: 'Juan',
                timestamp: Date.now()
              }
        )
      }
    ]
  })

  await producer.disconnect()
  process.exit(0)
} catch (err) {
  console.error(`producer.mjs: ${err && err.name ? err.name + ': ' : ''}${err && err.message ? err.message : err}`.replace(/\s+/g, ' '))
  process.exit(1)
}
