-- Task templates: registering one, which also makes its namespace's worker
-- queue and the queue's own functions (tasker.create_worker_queue,
-- worker_queues.sql).

-- Store (or update) a template and make sure its namespace's queue exists.
-- Tasks already created keep the steps they were created with.
CREATE OR REPLACE FUNCTION tasker.register_template(
    p_namespace text, p_name text, p_version text, p_template jsonb
) RETURNS uuid
LANGUAGE plpgsql AS $$
DECLARE
    v_namespace integer;
    v_named_task uuid;
    v_queue text := tasker.worker_queue_name(p_namespace);
BEGIN
    INSERT INTO tasker.namespaces (name) VALUES (p_namespace) ON CONFLICT (name) DO NOTHING;
    SELECT namespace_id INTO v_namespace FROM tasker.namespaces WHERE name = p_namespace;

    INSERT INTO tasker.named_tasks (namespace_id, name, version, template)
    VALUES (v_namespace, p_name, p_version, p_template)
    ON CONFLICT (namespace_id, name, version) DO UPDATE
        SET template = EXCLUDED.template, updated_at = now()
        WHERE tasker.named_tasks.template IS DISTINCT FROM EXCLUDED.template
    RETURNING named_task_uuid INTO v_named_task;
    IF v_named_task IS NULL THEN
        SELECT named_task_uuid INTO v_named_task FROM tasker.named_tasks
         WHERE namespace_id = v_namespace AND name = p_name AND version = p_version;
    END IF;

    IF to_regproc('tasker.' || quote_ident('claim_' || v_queue)) IS NULL THEN
        PERFORM tasker.create_worker_queue(v_queue);
    END IF;
    RETURN v_named_task;
END $$;
