-- Trace context of messages whose payload is not a CloudEvents envelope (the public live draw
-- messages are plain JSON for browsers), so the relay's publish span can join the trace of the
-- draw that produced them. NULL where the envelope carries `traceparent` itself.
ALTER TABLE outbox ADD COLUMN trace_fields jsonb;

-- The trace context of the draws consumer's processing when it stored the show, copied to the
-- outbox when each step is released.
ALTER TABLE draw_live_steps ADD COLUMN trace_fields jsonb;
