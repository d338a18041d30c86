#!/usr/bin/env node
// The Node load generator's ceiling (python -m bench.network, issue 9): a trivial websocket
// server, in Node with the same `ws` and `cbor-x` as load.js, that answers each CallReducer at
// once with a TransactionUpdate-shaped map.  Run on the server core while load.js runs on the
// other, it shows how many msg/s load.js itself can drive at a given client count: a server
// result close to this figure is bound by the load generator, not by the server.
//
//   node echo.js PORT [HOST]
//
// Same handshake as stdb: the subprotocol v1.cbor.stdb (refused without it) and an IdentityToken
// first.  Exits on SIGTERM.
//
// load.js's fan-out mode too (issue 22): a Subscribe is answered with a SubscribeApplied of one
// row, and each CallReducer first sends one TransactionUpdate (the same bytes) to every
// subscribed client, then answers the caller, as stdb does.  What load.js measures against it
// is the fan-out floor of this pair of processes: a server that does nothing else.
'use strict';

const WebSocket = require('ws');
const { Encoder } = require('cbor-x');

const SUBPROTOCOL = 'v1.cbor.stdb';
const cbor = new Encoder({ useRecords: false, mapsAsObjects: true });
const port = Number(process.argv[2]);
const host = process.argv[3] || '127.0.0.1';
if (!Number.isInteger(port)) {
  process.stderr.write('usage: node echo.js PORT [HOST]\n');
  process.exit(2);
}

const ID = Buffer.alloc(32);
const subscribers = new Set();
const server = new WebSocket.Server({
  host, port, perMessageDeflate: false, maxPayload: 16 << 20,
  handleProtocols: (protocols) => (protocols.has(SUBPROTOCOL) ? SUBPROTOCOL : false),
});
server.on('connection', (ws) => {
  if (ws.protocol !== SUBPROTOCOL) {
    ws.close(1002, `ask for the websocket subprotocol ${SUBPROTOCOL}`);
    return;
  }
  let offset = 0;
  ws.send(cbor.encode({ type: 'IdentityToken', identity: ID, token: 'echo', connection_id: Buffer.alloc(16),
    database: 'echo' }));
  ws.on('message', (data) => {
    const msg = cbor.decode(data);
    offset += 1;
    if (msg.type === 'Subscribe') {
      subscribers.add(ws);
      ws.send(cbor.encode({
        type: 'SubscribeApplied', request_id: msg.request_id, queries: (msg.queries || []).map((sql, i) => ({
          query_id: i + 1, sql, table: 'account', rows: [[1, 1000]] })),
      }));
      return;
    }
    if (subscribers.size) {
      const update = cbor.encode({
        type: 'TransactionUpdate', offset, timestamp: Date.now() * 1000, reducer: msg.reducer, caller: ID,
        status: 'committed', message: null, request_id: null,
        updates: [{ query_id: 1, table: 'account', deletes: [[1, 1000]], inserts: [[1, 999]] }],
      });
      for (const s of subscribers) if (s !== ws) s.send(update);
    }
    ws.send(cbor.encode({
      type: 'TransactionUpdate', offset, timestamp: Date.now() * 1000, reducer: msg.reducer === undefined ? null
        : msg.reducer, caller: ID, status: 'committed', message: null, request_id: msg.request_id === undefined
        ? null : msg.request_id, updates: [],
    }));
  });
  ws.on('error', () => {});
  ws.on('close', () => subscribers.delete(ws));
});
server.on('listening', () => process.stdout.write(`listening on ${host}:${port}\n`));
process.on('SIGTERM', () => process.exit(0));
