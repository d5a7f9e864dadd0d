// Interop tests with the amqplib promise API, run by node's built-in test runner.
// AMQP_URL names the broker (run.sh sets it). Every wait is bounded by a timer that
// fails the test; nothing sleeps to synchronise.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { randomUUID } = require('node:crypto');
const amqp = require('amqplib');

const AMQP_URL = process.env.AMQP_URL || 'amqp://guest:guest@127.0.0.1:5672/%2F';
const VHOST = decodeURIComponent(new URL(AMQP_URL).pathname.slice(1)) || '/';
const WAIT_MS = 5000;
const TEST_OPTS = { timeout: 20000 };

let conn;
const queues = [];
const exchanges = [];

function unique(kind) {
  const name = `interop-js-${kind}-${randomUUID()}`;
  (kind === 'q' ? queues : exchanges).push(name);
  return name;
}

// Resolve with the value `register(resolve, reject)` produces, or reject after WAIT_MS.
function within(what, register) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), WAIT_MS);
    register(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (err) => {
        clearTimeout(timer);
        reject(err);
      },
    );
  });
}

// Consume exactly `n` messages from `queue` on `ch` (auto-ack), then cancel.
async function consumeN(ch, queue, n) {
  const got = [];
  let finish;
  const done = within(`${n} deliveries on ${queue}`, (resolve) => {
    finish = resolve;
  });
  let ok;
  try {
    ok = await ch.consume(
      queue,
      (msg) => {
        if (msg === null) return;
        got.push(msg);
        if (got.length === n) finish();
      },
      { noAck: true },
    );
  } catch (err) {
    finish(); // settle the timer before failing
    throw err;
  }
  await done;
  await ch.cancel(ok.consumerTag);
  return got;
}

before(async () => {
  conn = await amqp.connect(AMQP_URL);
});

after(async () => {
  const ch = await conn.createChannel();
  for (const q of queues) await ch.deleteQueue(q);
  for (const x of exchanges) await ch.deleteExchange(x);
  await conn.close();
});

test('publish to the default exchange and consume', TEST_OPTS, async () => {
  const ch = await conn.createChannel();
  const q = unique('q');
  const ok = await ch.assertQueue(q, { durable: false });
  assert.equal(ok.queue, q);
  assert.equal(ok.messageCount, 0);
  ch.sendToQueue(q, Buffer.from('hello'), {
    contentType: 'text/plain',
    headers: { 'x-n': 7, 'x-s': 'v' },
    messageId: 'm-1',
    correlationId: 'c-1',
    persistent: true,
  });
  ch.sendToQueue(q, Buffer.from('world'));
  const [first, second] = await consumeN(ch, q, 2);
  assert.equal(first.content.toString(), 'hello');
  assert.equal(first.fields.routingKey, q);
  assert.equal(first.fields.exchange, '');
  assert.equal(first.fields.redelivered, false);
  assert.equal(first.properties.contentType, 'text/plain');
  assert.deepEqual(first.properties.headers, { 'x-n': 7, 'x-s': 'v' });
  assert.equal(first.properties.messageId, 'm-1');
  assert.equal(first.properties.correlationId, 'c-1');
  assert.equal(first.properties.deliveryMode, 2);
  assert.equal(second.content.toString(), 'world');
  await ch.close();
});

test('publish through direct and topic exchanges', TEST_OPTS, async () => {
  const ch = await conn.createConfirmChannel();
  const direct = unique('x');
  const topic = unique('x');
  const qd = unique('q');
  const qt = unique('q');
  await ch.assertExchange(direct, 'direct', { durable: false });
  await ch.assertExchange(topic, 'topic', { durable: false });
  await ch.assertQueue(qd, { durable: false });
  await ch.assertQueue(qt, { durable: false });
  await ch.bindQueue(qd, direct, 'k1');
  await ch.bindQueue(qt, topic, 'stock.*.nyse');
  ch.publish(direct, 'k1', Buffer.from('d1'));
  ch.publish(direct, 'k2', Buffer.from('not routed'));
  ch.publish(topic, 'stock.ibm.nyse', Buffer.from('t1'));
  ch.publish(topic, 'stock.ibm.lse', Buffer.from('not routed'));
  await ch.waitForConfirms();
  assert.equal((await ch.checkQueue(qd)).messageCount, 1);
  assert.equal((await ch.checkQueue(qt)).messageCount, 1);
  const [d] = await consumeN(ch, qd, 1);
  const [t] = await consumeN(ch, qt, 1);
  assert.equal(d.content.toString(), 'd1');
  assert.equal(d.fields.exchange, direct);
  assert.equal(t.content.toString(), 't1');
  assert.equal(t.fields.routingKey, 'stock.ibm.nyse');
  await ch.close();
});

test('get with message count, ack, nack with requeue, get-empty', TEST_OPTS, async () => {
  const ch = await conn.createConfirmChannel();
  const q = unique('q');
  await ch.assertQueue(q, { durable: false });
  ch.sendToQueue(q, Buffer.from('a'));
  ch.sendToQueue(q, Buffer.from('b'));
  await ch.waitForConfirms();
  const a = await ch.get(q);
  assert.equal(a.content.toString(), 'a');
  assert.equal(a.fields.messageCount, 1);
  ch.nack(a, false, true);
  const again = await ch.get(q);
  assert.equal(again.content.toString(), 'a');
  assert.equal(again.fields.redelivered, true);
  ch.ack(again);
  const b = await ch.get(q);
  assert.equal(b.content.toString(), 'b');
  assert.equal(b.fields.messageCount, 0);
  ch.ack(b);
  assert.equal(await ch.get(q), false);
  await ch.close();
});

test('confirm channel: waitForConfirms and per-message callbacks', TEST_OPTS, async () => {
  const ch = await conn.createConfirmChannel();
  const q = unique('q');
  await ch.assertQueue(q, { durable: false });
  const acked = [];
  for (let i = 0; i < 50; i++) {
    ch.sendToQueue(q, Buffer.from(`c${i}`), {}, (err) => {
      assert.equal(err, null);
      acked.push(i);
    });
  }
  await ch.waitForConfirms();
  assert.equal(acked.length, 50);
  assert.equal((await ch.checkQueue(q)).messageCount, 50);
  await ch.close();
});

test('confirm channel: mandatory unroutable publish is returned with 312 NO_ROUTE', TEST_OPTS, async () => {
  const ch = await conn.createConfirmChannel();
  const missing = unique('q');
  const returned = within('basic.return', (resolve) => ch.once('return', resolve));
  ch.publish('', missing, Buffer.from('bounce'), { mandatory: true });
  await ch.waitForConfirms();
  const msg = await returned;
  assert.equal(msg.fields.replyCode, 312);
  assert.equal(msg.fields.replyText, 'NO_ROUTE');
  assert.equal(msg.fields.exchange, '');
  assert.equal(msg.fields.routingKey, missing);
  assert.equal(msg.content.toString(), 'bounce');
  await ch.close();
});

test('error: checkQueue of a missing queue is 404 NOT_FOUND', TEST_OPTS, async () => {
  const ch = await conn.createChannel();
  const closed = within('channel error event', (resolve) => ch.once('error', resolve));
  const missing = unique('q');
  await assert.rejects(ch.checkQueue(missing), (err) => {
    assert.equal(err.code, 404);
    assert.match(err.message, /404 \(NOT-FOUND\)/);
    assert.ok(
      err.message.includes(`"NOT_FOUND - no queue '${missing}' in vhost '${VHOST}'"`),
      err.message,
    );
    return true;
  });
  assert.equal((await closed).code, 404);
  // The connection survives a channel error.
  const other = await conn.createChannel();
  await other.assertQueue('', { exclusive: true });
  await other.close();
});

test('error: acking an unknown delivery tag is 406 PRECONDITION_FAILED', TEST_OPTS, async () => {
  const ch = await conn.createChannel();
  const closed = within('channel error event', (resolve) => ch.once('error', resolve));
  ch.ack({ fields: { deliveryTag: 82 } });
  const err = await closed;
  assert.equal(err.code, 406);
  assert.ok(
    err.message.includes('"PRECONDITION_FAILED - unknown delivery tag 82"'),
    err.message,
  );
});
