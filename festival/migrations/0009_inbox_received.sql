-- The operator dashboard counts webhooks received per partner in the last 5 minutes and hour, and
-- reads the latest ones for the webhook-to-applied latency. With `partner` in the index, the counts
-- are index-only scans of the recent entries instead of a scan of the whole inbox.
-- NOTE: the migration runs in a transaction, so the index is not built CONCURRENTLY: on a large
-- inbox, webhook inserts wait until the build ends.
CREATE INDEX inbox_received ON inbox (received_at, partner);
