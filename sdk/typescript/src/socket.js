// Opening the websocket: the platform's WebSocket (browsers, Node >= 22), else `ws` in Node.

import { AuthError, ConnectionLost, StdbError } from './errors.js';
import { SUBPROTOCOL } from './protocol.js';

async function webSocketClass(given) {
  if (given) return given;
  if (typeof globalThis.WebSocket === 'function') return globalThis.WebSocket;
  const node = await import('./node.js');
  return node.nodeWebSocket();
}

/** Open a socket and wait for its first message (the server's IdentityToken).  Resolves to
 * {socket, first} with the socket's message and close listeners still to be attached by the
 * caller (messages after the first are queued until then). */
export async function openSocket(url, shownUrl, { WebSocket: given, maxMessage, timeoutMs }) {
  const WS = await webSocketClass(given);
  return new Promise((resolve, reject) => {
    let done = false;
    const queue = [];
    let onMsg = null;
    let onClose = null;
    let closed = null; // a close before the caller attached
    const fail = (err) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      try { sock.close(); } catch { /* not open yet */ }
      reject(err);
    };
    const sock = WS === globalThis.WebSocket ? new WS(url, [SUBPROTOCOL]) : new WS(url, [SUBPROTOCOL], { maxPayload: maxMessage });
    sock.binaryType = 'arraybuffer';
    const timer = setTimeout(() => fail(new ConnectionLost(`cannot connect to ${shownUrl}: no answer within ${timeoutMs / 1000} s`,
      { hint: 'is `stdb start` running there?' })), timeoutMs);
    if (typeof sock.on === 'function') {
      // ws: read the body of a refusal (a 401 names why the token was refused)
      sock.on('unexpected-response', (req, res) => {
        let body = '';
        res.on('data', (d) => { body += d; });
        res.on('end', () => {
          const err = res.statusCode === 401
            ? new AuthError(`the server refused the token: ${body}`, { hint: 'connect without a token for a new identity' })
            : new StdbError(`the server refused the connection (${res.statusCode}): ${body}`, { code: 'connection_refused' });
          fail(err);
          req.destroy();
        });
      });
    }
    sock.addEventListener('error', (e) => fail(new ConnectionLost(`cannot connect to ${shownUrl}: ${e.message ?? 'websocket error'}`,
      { hint: 'is `stdb start` running there?' })));
    sock.addEventListener('close', (e) => {
      if (!done) fail(new ConnectionLost(`cannot connect to ${shownUrl}: closed (${e.code} ${e.reason})`, { hint: 'is `stdb start` running there?' }));
      else if (onClose) onClose(e);
      else closed = e;
    });
    sock.addEventListener('message', (e) => {
      if (onMsg) { onMsg(e.data); return; }
      if (!done) {
        done = true;
        clearTimeout(timer);
        resolve({
          socket: sock,
          first: e.data,
          attach(message, close) {
            onMsg = message;
            onClose = close;
            for (const d of queue.splice(0)) message(d);
            if (closed) close(closed);
          },
        });
        return;
      }
      queue.push(e.data);
    });
  });
}
