-- connlog schema version 2: partial indexes for the questions that look for a few connections
-- among millions (listeners, failed connects, retransmitting connections). Each is small: it
-- holds only the rows its question wants.

CREATE INDEX connections_listening ON connections(local_port) WHERE direction = 0;
CREATE INDEX connections_failed ON connections(closed_at) WHERE end_reason = 6;
CREATE INDEX connections_retransmitting ON connections(max_retransmits) WHERE max_retransmits > 0;
