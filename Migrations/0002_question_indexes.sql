-- connlog schema version 2: indexes for questions over millions of connections.
-- Partial indexes for the questions that look for a few connections (listeners, failed connects,
-- retransmitting connections): each holds only the rows its question wants.

CREATE INDEX connections_listening ON connections(local_port) WHERE direction = 0;
CREATE INDEX connections_failed ON connections(closed_at) WHERE end_reason = 6;
CREATE INDEX connections_retransmitting ON connections(max_retransmits) WHERE max_retransmits > 0;
-- The notes on blind spots count these two kinds, which are few, alongside many answers.
CREATE INDEX connections_preexisting ON connections(first_seen) WHERE preexisting = 1;
CREATE INDEX connections_ambiguous ON connections(closed_at) WHERE end_reason = 5;

-- "Connections alive in a time window" are those still open plus those closed since its start:
-- with this index a question about the last hour reads the last hour, not the whole history.
CREATE INDEX connections_by_closed_at ON connections(closed_at);
