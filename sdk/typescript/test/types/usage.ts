// Compiled by `npm run typecheck` (tsc --noEmit): the declarations describe a real use.
import { connect, toHex, toDate, ReducerError, type Row, type Event } from '../../src/index.js';

interface Message extends Row { id: bigint; sender: Uint8Array; sent: bigint; text: string }

export async function main(): Promise<void> {
  const conn = await connect({ url: 'ws://127.0.0.1:3000', database: 'chat', reconnect: { initialDelayMs: 50 } });
  conn.onInsert<Message>('message', (m: Message, ev: Event) => console.log(toHex(m.sender), toDate(m.sent), m.text, ev.reducer));
  const off = conn.onDisconnect((reason: string) => console.log(reason));
  off();
  const sub = conn.subscribe('SELECT * FROM message');
  await sub.applied;
  const first: Message | null = conn.table<Message>('message').find(1n);
  for (const m of conn.table<Message>('message')) console.log(m.id + 1n, first?.text);
  const outcome = await conn.call('send_message', 'hi');
  try {
    outcome.raiseForStatus();
  } catch (e) {
    if (e instanceof ReducerError) console.log(e.reducerMessage, e.code);
  }
  const q = await conn.query('SELECT COUNT(*) FROM message');
  console.log(q.columns, q.rows.length);
  await sub.unsubscribe();
  await conn.close();
}
