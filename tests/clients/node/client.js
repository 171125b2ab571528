'use strict';
// Drives ali-ons (a real third-party RocketMQ client) for wasmq's cross-process tests.
// Usage: node client.js '<json job>'; prints one JSON object per line on stdout.
//   produce: {"role":"produce","namesrv":"127.0.0.1:9876","topic":"T","group":"PG",
//             "messages":[{"tags":"A","keys":"k1","props":{"a":"1"},"body":"text"|"bodySize":N,
//                          "shardingKey":"s","delayLevel":2}]}
//     -> {"event":"sent","i":0,"status":"SEND_OK","msgId":..,"brokerName":..,"queueId":..,"queueOffset":..}
//     "generate":{"count":N,"prefix":"p","tags":"T","padMod":M} instead of "messages" sends N
//     messages with bodies "<prefix>-<i>-" and i % M more 'x's (no padding unless M is set), so
//     that long runs fit on a command line.
//   consume: {"role":"consume","namesrv":..,"topic":..,"group":..,"expr":"*","type":"TAG"|"SQL92"|any plugin type,
//             "broadcast":false,"from":"first"|"last","expect":N,"lingerMs":500,"timeoutMs":60000,
//             "failTimes":0}
//     -> {"event":"ready"} once subscribed, {"event":"msg",...} per delivery, {"event":"done",...}
//     "topics":["T1","T2"] instead of "topic" subscribes the one consumer to each topic (same expr).
//     "pollMs":N refreshes routes from the NameServer every N ms (ali-ons' pollNameServerInteval,
//     30 s unless set); "persistMs":N commits consumed offsets every N ms (5 s unless set).
//   A failed send reports {"event":"error","i":..,"error":<the exception's message>,"code":<the
//   broker's response code, when the broker refused it>}.
//   "retryBusyMs":N: a send ali-ons gives up with SYSTEM_BUSY (code 2; ali-ons does not retry
//   it) reports {"event":"busy","i":..,"error":..} and is sent again after N ms, as an
//   application does (at most 50 times).
// Every run has a hard timeout and exits by itself.
const crypto = require('crypto');
const { Producer, Consumer, Message } = require('ali-ons');

const job = JSON.parse(process.argv[2] || '{}');
const out = o => process.stdout.write(JSON.stringify(o) + '\n');
const hardTimeout = job.timeoutMs || 60000;
setTimeout(() => {
  out({ event: 'timeout' });
  process.exit(3);
}, hardTimeout + 5000).unref();

// ali-ons insists on an HTTP client even when a NameServer address is given; it is never used.
const httpclient = { request: async () => { throw new Error('no HTTP address server in tests'); } };
const quietLogger = { info() {}, warn() {}, debug() {}, error(e) { process.stderr.write(String(e && e.stack || e) + '\n'); } };

function bodyOf(m, i) {
  if (m.bodySize) {
    const b = Buffer.alloc(m.bodySize);
    for (let k = 0; k < b.length; k++) b[k] = (k * 31 + i) & 0xff;
    return b;
  }
  return Buffer.from(m.body !== undefined ? String(m.body) : `message-${i}`);
}

function jobMessages() {
  if (job.messages) return job.messages;
  const g = job.generate;
  const msgs = [];
  for (let i = 0; i < g.count; i++) {
    msgs.push({ tags: g.tags, body: `${g.prefix}-${i}-` + 'x'.repeat(g.padMod ? i % g.padMod : 0) });
  }
  return msgs;
}

async function produce() {
  const producer = new Producer({ httpclient, nameSrv: job.namesrv, producerGroup: job.group || 'PG_NODE', logger: quietLogger });
  await producer.ready();
  let i = 0;
  for (const m of jobMessages()) {
    const msg = new Message(job.topic, m.tags || '', bodyOf(m, i));
    if (m.keys) msg.keys = m.keys.split(' ');
    for (const [k, v] of Object.entries(m.props || {})) msg.properties[k] = String(v);
    if (m.shardingKey) msg.shardingKey = m.shardingKey;
    if (m.delayLevel) msg.delayTimeLevel = m.delayLevel;
    for (let attempt = 1; ; attempt++) {
      try {
        const start = Date.now();
        const r = await producer.send(msg);
        out({ event: 'sent', i, start, at: Date.now(), status: r.sendStatus, msgId: r.msgId, brokerName: r.messageQueue.brokerName, queueId: r.messageQueue.queueId, queueOffset: Number(r.queueOffset) });
      } catch (e) {
        if (job.retryBusyMs && e.code === 2 && attempt < 50) {
          out({ event: 'busy', i, error: String(e.message || e) });
          await new Promise(r => setTimeout(r, job.retryBusyMs));
          continue;
        }
        out({ event: 'error', i, error: String(e.message || e), code: e.code });
      }
      break;
    }
    i++;
  }
  await producer.close();
}

async function consume() {
  const opts = {
    httpclient,
    nameSrv: job.namesrv,
    consumerGroup: job.group,
    isBroadcast: !!job.broadcast,
    logger: quietLogger,
    rebalanceInterval: 1000,
    consumeFromWhere: job.from === 'last' ? 'CONSUME_FROM_LAST_OFFSET' : 'CONSUME_FROM_FIRST_OFFSET',
  };
  if (job.instance) opts.instanceName = job.instance;
  if (job.maxReconsumeTimes !== undefined) opts.maxReconsumeTimes = job.maxReconsumeTimes;
  // ali-ons spells the option this way.
  if (job.pollMs) opts.pollNameServerInteval = job.pollMs;
  if (job.persistMs) opts.persistConsumerOffsetInterval = job.persistMs;
  const consumer = new Consumer(opts);
  consumer.on('error', e => process.stderr.write(`consumer error: ${e.message}\n`));
  await consumer.ready();
  const failures = new Map();
  let count = 0;
  let finish;
  const finished = new Promise(r => { finish = r; });
  const expr = job.type && job.type !== 'TAG' ? { expressionType: job.type, subString: job.expr } : (job.expr || '*');
  const handler = async msg => {
    // Retried copies have new ids: count failures by the original message.
    const id = msg.originMessageId || msg.msgId;
    const failed = failures.get(id) || 0;
    out({ event: 'attempt', body: msg.body.length <= 256 ? msg.body.toString() : undefined,
      reconsumeTimes: msg.reconsumeTimes, topic: msg.topic, at: Date.now() });
    if (failed < (job.failTimes || 0)) {
      failures.set(id, failed + 1);
      throw new Error(`failing on purpose (${failed + 1})`);
    }
    count++;
    out({
      event: 'msg', topic: msg.topic, tags: msg.tags, keys: msg.keys, msgId: id, queueId: msg.queueId,
      queueOffset: Number(msg.queueOffset), reconsumeTimes: msg.reconsumeTimes, bodyLen: msg.body.length,
      body: msg.body.length <= 256 ? msg.body.toString() : undefined,
      bodySha256: crypto.createHash('sha256').update(msg.body).digest('hex'),
      props: msg.properties, storeTimestamp: Number(msg.storeTimestamp), bornTimestamp: Number(msg.bornTimestamp),
      at: Date.now(),
    });
    if (job.expect && count >= job.expect) finish();
  };
  for (const topic of job.topics || [job.topic]) consumer.subscribe(topic, expr, handler);
  out({ event: 'ready' });
  const timer = setTimeout(finish, job.timeoutMs || 60000);
  await finished;
  clearTimeout(timer);
  if (job.lingerMs) await new Promise(r => setTimeout(r, job.lingerMs));
  await consumer.close();
  out({ event: 'done', count });
}

// Exit once stdout is flushed: a pipe's pending writes are dropped by process.exit.
const exit = code => process.stdout.write('', () => process.exit(code));
(job.role === 'produce' ? produce() : consume())
  .then(() => exit(0))
  .catch(e => {
    out({ event: 'fatal', error: String(e && e.stack || e) });
    exit(2);
  });
