// The course material's "Event Streaming (Kafka)" pattern, runnable end to end:
//   an API publishes {type: 'order_created', order} to topic 'orders' (one message per order,
//   value only, no key, as in the seed), and several services consume every event, each in
//   its own consumer group: inventario, notificaciones, analytics.
//
// Environment:
//   KAFKA_BROKERS  comma-separated brokers (default 'localhost:9092')
//   TOPIC          topic (default 'orders')
//   ORDERS         how many orders to publish, or to expect (default 3)
//   TIMEOUT_MS     give up after this long (default 30000): exit 1
//   GROUP_SUFFIX   appended to each service's groupId (default none), so reruns on one broker
//                  can start from the beginning in fresh groups
//   FETCH_MAX_WAIT_MS  consumers' fetch max wait (default 500; see the tansu note below)
//   KAFKA_CREATE_TOPIC=0  do not create the topic when missing (see topic.mjs)
//   CHARLA_ORDERS_FROM_CHARLA=1
//                  publish nothing: only consume, and expect ORDERS messages from another
//                  producer (charla). Every message counts, whatever its shape; the summary
//                  says how many were order_created events (sent as the value itself, or as
//                  the `mensaje` text of a charla chat message).
//
// Output: one line per service, "inventario: 3 orders", then one JSON summary line. Exit 0
// once every service got every order (and all consumers committed and left their groups).
// In publish mode only the orders this run published are counted (by order id), so older
// messages in a reused topic do not make it pass.
import { randomBytes } from 'node:crypto'
import { Kafka, logLevel } from 'kafkajs'
import { ensureTopic } from './topic.mjs'

process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1'

const brokers = (process.env.KAFKA_BROKERS || 'localhost:9092').split(',').map((b) => b.trim()).filter(Boolean)
const topic = process.env.TOPIC || 'orders'
const orders = process.env.ORDERS ? Number(process.env.ORDERS) : 3
const timeoutMs = process.env.TIMEOUT_MS ? Number(process.env.TIMEOUT_MS) : 30000
const groupSuffix = process.env.GROUP_SUFFIX || ''
const fromCharla = process.env.CHARLA_ORDERS_FROM_CHARLA === '1'
const SERVICES = ['inventario', 'notificaciones', 'analytics']

function fail (text) {
  console.error(`event_streaming.mjs: ${String(text).replace(/\s+/g, ' ')}`)
  process.exit(1)
}

if (!(Number.isInteger(orders) && orders > 0)) fail(`ORDERS must be a positive integer, not ${process.env.ORDERS}`)

// Workaround for tansu: tansu 0.6.0 answers every Fetch only after sleeping half of the
// request's max_wait_ms, even when records are already there (storage/src/service/fetch.rs:
// the poll loop sleeps before checking min_bytes). With kafkajs's default maxWaitTimeInMs of
// 5000 every fetch round then takes 2.5 s, and disconnect() waits for the fetch in flight.
// FETCH_MAX_WAIT_MS (default 500, librdkafka's default) keeps that to 250 ms; it changes only
// how long the broker may hold an empty fetch, not what is consumed.
const maxWaitTimeInMs = process.env.FETCH_MAX_WAIT_MS ? Number(process.env.FETCH_MAX_WAIT_MS) : 500

const started = Date.now()
const kafka = new Kafka({
  clientId: 'my-app',
  brokers,
  logLevel: logLevel.WARN
})

const runId = randomBytes(4).toString('hex')
const published = new Set() // order ids this run published (publish mode)

// Per service: what it has seen, plus a little of the work each service would do.
const state = Object.fromEntries(SERVICES.map((name) => [name, {
  ids: new Set(), // counted orders (publish mode: our ids; charla mode: topic/partition/offset)
  events: 0, // order_created events among them
  units: 0, // inventario: units to reserve
  emails: new Set(), // notificaciones: customers to notify
  revenue: 0 // analytics: total sold
}]))

let allDone
const everyServiceDone = new Promise((resolve) => { allDone = resolve })

function complete (name) {
  return state[name].ids.size >= orders
}

function handle (name, topicName, partition, message) {
  const s = state[name]
  let event = null
  try {
    event = JSON.parse(message.value.toString())
    // A charla chat message whose text is the event: {usuario, mensaje: '{"type":...}', ...}
    if (event && typeof event.mensaje === 'string' && event.type === undefined) event = JSON.parse(event.mensaje)
  } catch (_) {}
  const isOrder = event && event.type === 'order_created' && event.order
  if (fromCharla) {
    s.ids.add(`${topicName}/${partition}/${message.offset}`)
  } else if (isOrder && published.has(event.order.id)) {
    s.ids.add(event.order.id)
  } else {
    return
  }
  if (isOrder) {
    s.events++
    const order = event.order
    if (name === 'inventario') s.units += (order.items || []).reduce((n, item) => n + (item.qty || 0), 0)
    if (name === 'notificaciones' && order.customer) s.emails.add(order.customer)
    if (name === 'analytics') s.revenue += order.total || 0
  }
  if (SERVICES.every(complete)) allDone()
}

const consumers = SERVICES.map((name) => kafka.consumer({ groupId: name + groupSuffix, maxWaitTimeInMs }))
let producer = null

const timer = setTimeout(async () => {
  const counts = SERVICES.map((name) => `${name}=${state[name].ids.size}`).join(' ')
  console.error(`event_streaming.mjs: timeout after ${timeoutMs} ms: expected ${orders} orders per service on topic ${topic}, got ${counts}`)
  await Promise.race([
    Promise.allSettled([...consumers.map((c) => c.disconnect()), producer && producer.disconnect()]),
    new Promise((resolve) => setTimeout(resolve, 5000))
  ])
  process.exit(1)
}, timeoutMs)

try {
  await ensureTopic(kafka, topic)

  // Múltiples servicios consumen: each service its own group, so each gets every event.
  // The three services start side by side, as separate services would.
  await Promise.all(SERVICES.map(async (name, i) => {
    const consumer = consumers[i]
    consumer.on(consumer.events.CRASH, ({ payload }) => {
      if (payload && payload.restart === false) fail(`${name} crashed: ${payload.error && payload.error.message}`)
    })
    const joined = new Promise((resolve) => consumer.on(consumer.events.GROUP_JOIN, resolve))
    await consumer.connect()
    await consumer.subscribe({ topic, fromBeginning: true })
    await consumer.run({
      eachMessage: async ({ topic, partition, message }) => handle(name, topic, partition, message)
    })
    await joined
  }))

  if (!fromCharla) {
    // API publica evento: one send per created order, as the seed's POST /api/orders does.
    producer = kafka.producer()
    await producer.connect()
    for (let n = 1; n <= orders; n++) {
      const order = {
        id: `order-${runId}-${n}`,
        customer: `cliente${n}@example.com`,
        items: [{ sku: `SKU-${n}`, qty: n }],
        total: 10 * n,
        createdAt: new Date().toISOString()
      }
      published.add(order.id)
      await producer.send({
        topic,
        messages: [{
          value: JSON.stringify({
            type: 'order_created',
            order
          })
        }]
      })
    }
    await producer.disconnect()
  }

  await everyServiceDone
  clearTimeout(timer)
  await Promise.all(consumers.map((c) => c.disconnect()))
} catch (err) {
  fail(`${err && err.name ? err.name + ': ' : ''}${err && err.message ? err.message : err}`)
}

for (const name of SERVICES) console.log(`${name}: ${state[name].ids.size} orders`)
console.log(JSON.stringify({
  topic,
  mode: fromCharla ? 'consume-only' : 'publish-and-consume',
  orders,
  published: published.size,
  services: Object.fromEntries(SERVICES.map((name) => [name, {
    orders: state[name].ids.size,
    order_created: state[name].events
  }])),
  inventario_units: state.inventario.units,
  notificaciones_customers: state.notificaciones.emails.size,
  analytics_revenue: state.analytics.revenue,
  seconds: (Date.now() - started) / 1000
}))
process.exit(0)
