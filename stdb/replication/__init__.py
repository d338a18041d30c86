"""Replication through NATS JetStream: a leader publishes its databases' commit logs, followers
apply them, and a lease in a JetStream key-value bucket says who leads (docs/replication.md).

``bridge`` runs nats-py's asyncio beside the server's trio; ``wire`` is the stream's message
format; ``publisher`` is the leader's side of one database; ``node`` is a node's part in the
cluster (its role, the lease, the followers' consumers, its status)."""
