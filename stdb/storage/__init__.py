"""Storage: the transactional datastore (and, later, the commit log and snapshots)."""
