'use strict';
// A relay in the style of the original SpiderChat backend, as the peer spider-load compares
// Spider against: one WebSocket per user, JSON messages routed by recipient id, nothing durable.
//
//   client -> server  {"type":"login","user":"<id>"}
//   server -> client  {"type":"ready","user":"<id>"}
//   client -> server  {"type":"send","id":<n>,"to":"<id>","body":"..."}
//   server -> client  {"type":"message","from":"<id>","body":"..."}   (to the recipient)
//   server -> client  {"type":"ack","id":<n>}                         (to the sender, once routed)
//   server -> client  {"type":"error","reason":"..."}
//
// Messages for a user who is offline wait in memory (bounded per user) until it logs in.
// Usage: node server.js [--port N] [--host 127.0.0.1]   (port 0: any free port)
// Prints "listening <port>" once ready.

const { WebSocketServer } = require('ws');

// Bounds (named, with the reason): a message is at most spider-load's 1 MiB payload, base64'd,
// plus JSON; an offline user's queue is bounded so that a run cannot exhaust memory.
const MAX_PAYLOAD = 2 * 1024 * 1024;
const MAX_OFFLINE_QUEUE = 10000;

function arg(name, fallback) {
  const i = process.argv.indexOf(name);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

const host = arg('--host', process.env.HOST || '127.0.0.1');
const port = Number(arg('--port', process.env.PORT || '18084'));
if (!/^127\.|^::1$|^localhost$/.test(host)) {
  console.error(`refusing to listen on ${host}: loopback only`);
  process.exit(2);
}

const online = new Map(); // user id -> WebSocket
const offline = new Map(); // user id -> [encoded message]

const wss = new WebSocketServer({ host, port, perMessageDeflate: false, maxPayload: MAX_PAYLOAD });

function deliver(to, text) {
  const peer = online.get(to);
  if (peer && peer.readyState === peer.OPEN) {
    peer.send(text);
    return true;
  }
  let queue = offline.get(to);
  if (!queue) {
    queue = [];
    offline.set(to, queue);
  }
  if (queue.length >= MAX_OFFLINE_QUEUE) return false;
  queue.push(text);
  return true;
}

wss.on('connection', (ws) => {
  let user = null;
  ws.on('message', (data, isBinary) => {
    if (isBinary) return;
    let msg;
    try {
      msg = JSON.parse(data.toString());
    } catch {
      ws.send(JSON.stringify({ type: 'error', reason: 'malformed json' }));
      return;
    }
    if (msg.type === 'login' && typeof msg.user === 'string' && user === null) {
      user = msg.user;
      const previous = online.get(user);
      if (previous && previous !== ws) previous.close(4000, 'replaced'); // one socket per user
      online.set(user, ws);
      ws.send(JSON.stringify({ type: 'ready', user }));
      const queued = offline.get(user);
      if (queued) {
        offline.delete(user);
        for (const text of queued) ws.send(text);
      }
    } else if (msg.type === 'send' && user !== null && typeof msg.to === 'string') {
      const text = JSON.stringify({ type: 'message', from: user, body: msg.body });
      if (deliver(msg.to, text)) {
        ws.send(JSON.stringify({ type: 'ack', id: msg.id }));
      } else {
        ws.send(JSON.stringify({ type: 'error', reason: 'recipient queue full' }));
      }
    } else {
      ws.send(JSON.stringify({ type: 'error', reason: 'unexpected message' }));
    }
  });
  ws.on('close', () => {
    if (user !== null && online.get(user) === ws) online.delete(user);
  });
  ws.on('error', () => {});
});

wss.on('listening', () => {
  console.log(`listening ${wss.address().port}`);
});

function shutdown() {
  for (const ws of wss.clients) ws.terminate();
  wss.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
