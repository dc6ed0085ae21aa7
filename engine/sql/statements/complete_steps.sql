-- Orchestration's hot path for the common result: steps completed that
-- start nothing of their own. One plain statement, sent by the result
-- processor (orchestration/results.rs) before tasker.process_step_results,
-- which takes whatever this leaves. $1: how many messages to look at.
--
-- It does what process_step_results and evaluate_tasks do for such
-- results (messages taken, tasks locked, steps completed, the children
-- their completion made ready enqueued, a task whose steps are all done
-- finished, history rows, notifications) in one statement instead of a
-- dozen inside PL/pgSQL. Every node of a statement's plan is started on
-- every call, whether it gets rows or not, so the plan is kept small:
-- one UPDATE moves both the completed and the enqueued steps, one INSERT
-- records both, and the decisions are EXISTS tests, not aggregates.
--
-- One snapshot. A statement reads every table as of its start, also after
-- it waited for a task's row lock: another orchestrator that completed a
-- step of the same task and committed meanwhile is not seen, and a join
-- whose two parents were processed side by side would be enqueued by
-- neither. So a task is taken here only when the row version its locking
-- read returns (the newest) is the version the statement's snapshot saw:
-- then nobody changed the task after the snapshot, because everything
-- that changes a step in a way readiness reads (to complete, error,
-- cancelled, pending) does it under the task's row lock and updates the
-- task row in the same transaction (this statement, process_step_results,
-- dead letters). A task changed meanwhile has its messages left where
-- they are, for the function, which reads its steps after taking the lock
-- (e2e/orchestrators.rs runs that race).
--
-- A message is plain when its step waits for orchestration with a
-- completion (enqueued_for_orchestration) and is no decision, batchable
-- step or batch worker. Other messages of the same task are left to the
-- function, which processes them after this commits, as if they had come
-- later. A task is taken when it is in steps_in_process and what it does
-- next follows from the completed steps (as evaluate_tasks decides it): a child became
-- ready (enqueue the ready ones), a child waits for a parent still in
-- flight (nothing to do), all its steps are done (finish it), or another
-- step is still in flight (nothing to do). `decision` says which; it is
-- NULL for a task left to the function. A task in steps_in_process was
-- evaluated after its previous change, so what was ready then is
-- enqueued; only the completions' children can have become ready (the
-- readiness rule is tasks_step_readiness's, told which steps count as
-- done here). Anything else (another state, a batch worker to throttle,
-- a child blocked by a failed parent) is left to the function.
--
-- Growing tables are read by key only (engine/sql/README.md, plans):
-- `= ANY (ARRAY(SELECT ...))`. It runs on the result processor's session
-- settings: one generic plan, no sequential scans, no JIT.
--
-- Returns one row: the messages looked at, the messages taken (their
-- steps completed), and the tasks that finished and steps enqueued.
--
-- A worker with worker.complete_results sends it too, in the transaction
-- of its submit (engine/src/worker/results.rs), for the messages that
-- submit just wrote: `picked` reads `q.msg_id = ANY ($1)` (an array of
-- msg_ids) instead of the oldest visible messages, and `locked` skips a
-- task another transaction holds (SKIP LOCKED) rather than wait for it
-- while holding its steps; the messages of a task skipped or left are
-- orchestration's, as any it leaves here. The two lines it changes are
-- marked `-- worker:`.
WITH picked AS (
    SELECT q.msg_id, tasker.as_uuid(q.message->>'step_uuid') AS step_uuid
      FROM pgmq.q_orchestration_step_results q
     WHERE q.vt <= clock_timestamp() ORDER BY q.msg_id LIMIT $1 -- worker: picked
       FOR UPDATE SKIP LOCKED
), plain AS (
    -- the plain completions among them, with their steps' tasks
    SELECT s.workflow_step_uuid AS step_uuid, s.task_uuid
      FROM tasker.workflow_steps s
     WHERE s.workflow_step_uuid = ANY (ARRAY(SELECT p.step_uuid FROM picked p))
       AND s.state = 'enqueued_for_orchestration'
       AND s.step_type NOT IN ('decision', 'batchable', 'batch_worker')
), locked AS (
    -- their tasks' newest row versions, locked in uuid order (as every
    -- orchestrator locks tasks, so they never deadlock)
    SELECT t.task_uuid, t.ctid, t.state, t.worker_queue
      FROM tasker.tasks t
     WHERE t.task_uuid = ANY (ARRAY(SELECT p.task_uuid FROM plain p))
     ORDER BY t.task_uuid
       FOR NO KEY UPDATE -- worker: locked
), unchanged AS (
    -- the tasks whose newest version is the one the snapshot sees
    SELECT l.task_uuid, l.worker_queue
      FROM locked l
     WHERE l.state = 'steps_in_process'
       AND l.ctid = (SELECT t.ctid FROM tasker.tasks t WHERE t.task_uuid = l.task_uuid)
), completing AS (
    -- the steps completed here
    SELECT array_agg(p.step_uuid) AS steps
      FROM plain p
     WHERE p.task_uuid = ANY (ARRAY(SELECT u.task_uuid FROM unchanged u))
), children AS (
    -- their children's readiness, counting the completed steps as done
    -- (the steps as a column, not `ARRAY(SELECT ...)`: a subquery among
    -- its arguments keeps the readiness function from being inlined, and
    -- on its own it is planned afresh at every call)
    SELECT r.task_uuid, r.workflow_step_uuid, r.current_state, r.name, r.ready,
           r.parents_in_flight, r.step_type
      FROM completing c
     CROSS JOIN LATERAL tasker.tasks_step_readiness('{}', c.steps, c.steps) r
), decided AS (
    -- what each task does next (NULL: left to the function); EXISTS
    -- rather than aggregates, whose start-up is paid on every call
    SELECT u.task_uuid, u.worker_queue,
           CASE WHEN EXISTS (SELECT 1 FROM children c WHERE c.task_uuid = u.task_uuid
                                AND c.ready AND c.step_type = 'batch_worker') THEN NULL
                WHEN EXISTS (SELECT 1 FROM children c WHERE c.task_uuid = u.task_uuid AND c.ready)
                THEN 'enqueue'
                WHEN EXISTS (SELECT 1 FROM children c WHERE c.task_uuid = u.task_uuid
                                AND c.parents_in_flight > 0) THEN 'wait'
                WHEN NOT EXISTS (SELECT 1 FROM tasker.workflow_steps s, completing c
                                  WHERE s.task_uuid = u.task_uuid
                                    AND s.state NOT IN ('complete', 'resolved_manually', 'cancelled')
                                    AND NOT s.workflow_step_uuid = ANY (c.steps)) THEN 'finish'
                WHEN EXISTS (SELECT 1 FROM tasker.workflow_steps s, completing c
                              WHERE s.task_uuid = u.task_uuid AND tasker.step_in_flight(s.state)
                                AND NOT s.workflow_step_uuid = ANY (c.steps)) THEN 'wait'
           END AS decision
      FROM unchanged u
), taken AS (
    DELETE FROM pgmq.q_orchestration_step_results q
     WHERE q.msg_id = ANY (ARRAY(SELECT p.msg_id FROM picked p, plain s
                                  WHERE s.step_uuid = p.step_uuid
                                    AND s.task_uuid = ANY (ARRAY(SELECT d.task_uuid FROM decided d
                                                                  WHERE d.decision IS NOT NULL))))
    RETURNING q.msg_id
), ready AS (
    -- the ready children of the tasks that enqueue (their state in the
    -- snapshot is their state now: the task is unchanged)
    SELECT c.workflow_step_uuid, c.current_state, c.name
      FROM children c
     WHERE c.ready AND c.task_uuid = ANY (ARRAY(SELECT d.task_uuid FROM decided d
                                                 WHERE d.decision = 'enqueue'))
), moved AS (
    -- completed and enqueued steps in one UPDATE
    UPDATE tasker.workflow_steps ws
       SET state = CASE WHEN ws.state = 'enqueued_for_orchestration' THEN 'complete'
                        ELSE 'enqueued' END::tasker.step_state,
           transitions = ws.transitions + 1,
           processed_at = CASE WHEN ws.state = 'enqueued_for_orchestration' THEN clock_timestamp()
                               ELSE ws.processed_at END,
           updated_at = CASE WHEN ws.state = 'enqueued_for_orchestration' THEN clock_timestamp()
                             ELSE ws.updated_at END
     WHERE ws.workflow_step_uuid = ANY (ARRAY(SELECT p.step_uuid FROM plain p
                                               WHERE p.task_uuid = ANY (ARRAY(SELECT d.task_uuid FROM decided d
                                                                             WHERE d.decision IS NOT NULL)))
                                        || ARRAY(SELECT r.workflow_step_uuid FROM ready r))
       AND ws.state IN ('enqueued_for_orchestration', 'pending', 'waiting_for_retry')
    RETURNING ws.task_uuid, ws.workflow_step_uuid, ws.name, ws.state, ws.transitions, ws.timeout_seconds
), history AS (
    INSERT INTO tasker.workflow_step_transitions (workflow_step_uuid, from_state, to_state, sort_key)
    SELECT m.workflow_step_uuid,
           CASE WHEN m.state = 'complete' THEN 'enqueued_for_orchestration'
                ELSE (SELECT r.current_state FROM ready r WHERE r.workflow_step_uuid = m.workflow_step_uuid) END,
           m.state, m.transitions
      FROM moved m
), sent AS (
    -- one send a worker queue
    SELECT tasker.send_to_worker_queue(d.worker_queue,
               array_agg(jsonb_build_object('task_uuid', m.task_uuid, 'step_uuid', m.workflow_step_uuid,
                                            'timeout_s', m.timeout_seconds)
                         ORDER BY m.task_uuid, m.name)) AS sent,
           count(*) AS steps
      FROM moved m
      JOIN decided d ON d.task_uuid = m.task_uuid
     WHERE m.state = 'enqueued'
     GROUP BY d.worker_queue
), changed AS (
    -- Every task taken has its row updated, so an orchestrator that waited
    -- for its lock sees a newer version than its snapshot's and leaves it
    -- to the function; the finishing ones move to complete (through
    -- evaluating_results, as evaluate_tasks records it).
    UPDATE tasker.tasks t
       SET state = CASE WHEN d.decision = 'finish' THEN 'complete' ELSE t.state END,
           transitions = t.transitions + CASE WHEN d.decision = 'finish' THEN 2 ELSE 0 END,
           complete = t.complete OR d.decision = 'finish',
           completed_at = CASE WHEN d.decision = 'finish' THEN clock_timestamp() ELSE t.completed_at END,
           updated_at = clock_timestamp()
      FROM decided d
     WHERE t.task_uuid = d.task_uuid
       AND t.task_uuid = ANY (ARRAY(SELECT d.task_uuid FROM decided d WHERE d.decision IS NOT NULL))
    RETURNING t.task_uuid, t.transitions, d.decision = 'finish' AS finish
), finished AS (
    -- the finished tasks' two transitions
    INSERT INTO tasker.task_transitions (task_uuid, from_state, to_state, metadata, sort_key)
    SELECT c.task_uuid, f.from_state, f.to_state,
           CASE WHEN f.to_state = 'complete' THEN
               (SELECT jsonb_build_object('completed_steps', count(*) FILTER (WHERE s.state <> 'cancelled'),
                                          'skipped_steps', count(*) FILTER (WHERE s.state = 'cancelled'))
                  FROM tasker.workflow_steps s WHERE s.task_uuid = c.task_uuid)
           ELSE '{}' END,
           c.transitions - f.back
      FROM changed c,
           (VALUES ('steps_in_process'::tasker.task_state, 'evaluating_results'::tasker.task_state, 1),
                   ('evaluating_results', 'complete', 0)) f(from_state, to_state, back)
     WHERE c.finish
    RETURNING task_uuid, to_state
)
SELECT (SELECT count(*) FROM picked)::integer AS looked_at,
       (SELECT count(*) FROM taken)::integer AS taken,
       (SELECT count(pg_notify('tasker_task_finalized', f.task_uuid::text || ':complete'))
          FROM finished f WHERE f.to_state = 'complete')::integer AS finished,
       (SELECT coalesce(sum(s.steps), 0) FROM sent s)::integer AS enqueued
