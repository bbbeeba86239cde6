-- Run once on the coordinator by the citus-init service: the coordinator's own name, the two workers,
-- pgvector everywhere (CREATE EXTENSION on a Citus coordinator is propagated to the workers).
SELECT citus_set_coordinator_host('citus-coordinator', 5432);
SELECT citus_add_node('citus-worker-1', 5432);
SELECT citus_add_node('citus-worker-2', 5432);
CREATE EXTENSION IF NOT EXISTS vector;
SELECT nodename, nodeport FROM citus_get_active_worker_nodes() ORDER BY 1;
