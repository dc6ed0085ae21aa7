-- A task row keeps the worker queue its steps go to, and no longer a
-- foreign key to its template.
--
-- - Every enqueue looked the queue up from the task through its template
--   and namespace (three index lookups a step); the queue never changes
--   for a task, so it is written once, when the task is created.
-- - The foreign key to named_tasks made every task creation look up its
--   template row and lock it (FOR KEY SHARE): concurrent creations of one
--   template all locked the same row, which PostgreSQL records as a
--   multixact once two hold it. Templates are never deleted (they are
--   registered again with a new version), and create_task reads the
--   template it names in the same statement that inserts the task. The
--   index on named_task_uuid served only that key (every query joins
--   tasks to their template by the template's own key).
ALTER TABLE tasker.tasks DROP CONSTRAINT tasks_named_task_uuid_fkey;
DROP INDEX tasker.tasks_named_task_idx;
ALTER TABLE tasker.tasks ADD COLUMN worker_queue text;
UPDATE tasker.tasks t
   SET worker_queue = 'worker_' || ns.name || '_queue'
  FROM tasker.named_tasks nt
  JOIN tasker.namespaces ns ON ns.namespace_id = nt.namespace_id
 WHERE nt.named_task_uuid = t.named_task_uuid;
ALTER TABLE tasker.tasks ALTER COLUMN worker_queue SET NOT NULL;
