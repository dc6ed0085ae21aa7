-- Queues and their messages: queue names, the messages steps and results
-- travel as, and messages that cannot be processed.
--
-- Queues: worker_<namespace>_queue (steps for workers),
-- orchestration_step_results (results and due retries for orchestration;
-- created by the schema migration). Both are pgmq queues, but the hot path
-- writes pgmq's tables itself (see worker_queues.sql). Every send is
-- followed by pg_notify(<queue name>, '') so that listeners wake at once;
-- notifications on one channel in one transaction collapse into one.

-- The worker queue of a namespace (queue.rs worker_queue says the same).
CREATE OR REPLACE FUNCTION tasker.worker_queue_name(p_namespace text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$ SELECT 'worker_' || p_namespace || '_queue' $$;

-- A step's message: its ids, and its timeout, which sizes the claim's
-- lease. PL/pgSQL, not SQL: a SQL function with a FROM is never inlined
-- and would be planned on every call.
CREATE OR REPLACE FUNCTION tasker.step_message(p_task uuid, p_step uuid) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (SELECT jsonb_build_object('task_uuid', p_task, 'step_uuid', p_step,
                                      'timeout_s', ws.timeout_seconds)
              FROM tasker.workflow_steps ws WHERE ws.workflow_step_uuid = p_step);
END $$;

-- Send to orchestration, visible at p_at (now, or when a retry is due).
CREATE OR REPLACE FUNCTION tasker.send_to_orchestration(p_message jsonb, p_at timestamptz DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO pgmq.q_orchestration_step_results (vt, message)
    VALUES (coalesce(p_at, clock_timestamp()), p_message);
END $$;

-- A uuid from text, or NULL when the text is not one (a cast would raise
-- and fail the whole batch). Inlined by the planner.
CREATE OR REPLACE FUNCTION tasker.as_uuid(p_text text) RETURNS uuid
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_text ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
                THEN p_text::uuid END
$$;

-- A message that is not what its queue carries (not an object with the
-- expected uuids, or naming no known step or task) is moved to
-- tasker.rejected_messages with the reason, instead of failing its
-- consumer's transaction again and again.
CREATE OR REPLACE FUNCTION tasker.reject_message(p_queue text, p_msg_id bigint, p_message jsonb, p_reason text)
RETURNS void
LANGUAGE sql AS $$
    INSERT INTO tasker.rejected_messages (queue_name, msg_id, message, reason)
    VALUES (p_queue, p_msg_id, p_message, p_reason)
    ON CONFLICT DO NOTHING
$$;
