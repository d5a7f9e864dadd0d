// The publish form of the exchange and queue pages: routing key, delivery mode, headers,
// properties and payload, sent to POST /api/exchanges/{vhost}/{exchange}/publish.

import { post, enc } from './api.js';
import { h, field, form, parseArgs, select } from './dom.js';

const PROPS = ['content_type', 'content_encoding', 'priority', 'correlation_id', 'reply_to',
  'expiration', 'message_id', 'timestamp', 'type', 'user_id', 'app_id'];

/** `exchange` '' is the default exchange (amq.default in paths); `routingKey` the preset key. */
export function publishForm(vhost, exchange, routingKey = '') {
  const rk = h('input', { name: 'routing_key', value: routingKey });
  const mode = select('delivery_mode', [['1', '1 - non-persistent'], ['2', '2 - persistent']], '1');
  const headers = h('textarea', { name: 'headers', rows: 2, placeholder: 'name=value, one per line' });
  const props = h('textarea', { name: 'properties', rows: 2, placeholder: `e.g. content_type=text/plain (${PROPS.join(', ')})` });
  const payload = h('textarea', { name: 'payload', rows: 4 });
  const encoding = select('payload_encoding', [['string', 'String'], ['base64', 'Base64']], 'string');
  return form({ class: 'inline-form publish' }, [
    field('Routing key', rk), field('Delivery mode', mode), field('Headers', headers),
    field('Properties', props), field('Payload', payload), field('Payload encoding', encoding),
    h('button', { type: 'submit', class: 'primary' }, 'Publish message'),
  ], async () => {
    const properties = parseArgs(props.value);
    for (const k of Object.keys(properties)) {
      if (!PROPS.includes(k)) throw new Error(`unknown property "${k}" (known: ${PROPS.join(', ')})`);
    }
    properties.delivery_mode = Number(mode.value);
    const hdrs = parseArgs(headers.value);
    if (Object.keys(hdrs).length) properties.headers = hdrs;
    const x = exchange === '' ? 'amq.default' : exchange;
    const r = await post(`/api/exchanges/${enc(vhost)}/${enc(x)}/publish`, {
      properties, routing_key: rk.value, payload: payload.value, payload_encoding: encoding.value,
    });
    return r && r.routed ? 'Message published.' : 'Message published, but not routed.';
  });
}
