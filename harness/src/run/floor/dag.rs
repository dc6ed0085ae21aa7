//! The floor's orchestration logic, pure: a template's DAG held in memory,
//! and what a batch of results makes ready. The orchestrator loop turns a
//! [`Plan`] into its one statement.

use std::collections::{HashMap, HashSet};

use anyhow::{bail, Context};
use tasker_engine::template::StepType;
use tasker_engine::TaskTemplate;

/// A template's steps (by index, in template order) and their edges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dag {
    len: usize,
    parents: Vec<Vec<usize>>,
    children: Vec<Vec<usize>>,
}

impl Dag {
    /// The DAG of a template of standard steps (the floor runs no
    /// handlers: no decisions, no batches).
    pub fn from_template(template: &TaskTemplate) -> anyhow::Result<Self> {
        if let Some(step) = template
            .steps
            .iter()
            .find(|s| s.step_type != StepType::Standard || s.batch_config.is_some())
        {
            bail!(
                "the floor runs DAGs of standard steps; step '{}' of {} is not one",
                step.name,
                template.name
            );
        }
        let steps: Vec<(&str, Vec<&str>)> = template
            .steps
            .iter()
            .map(|s| {
                let deps = s.dependencies.iter().map(String::as_str).collect();
                (s.name.as_str(), deps)
            })
            .collect();
        Self::new(&steps).with_context(|| format!("template {}", template.name))
    }

    /// Steps as (name, the names it depends on), in order.
    pub fn new(steps: &[(&str, Vec<&str>)]) -> anyhow::Result<Self> {
        let index: HashMap<&str, usize> = steps
            .iter()
            .enumerate()
            .map(|(i, (name, _))| (*name, i))
            .collect();
        if index.len() != steps.len() {
            bail!("a step name is used twice");
        }
        let mut parents = vec![Vec::new(); steps.len()];
        let mut children = vec![Vec::new(); steps.len()];
        for (child, (name, deps)) in steps.iter().enumerate() {
            for dep in deps {
                let Some(&parent) = index.get(dep) else {
                    bail!("step '{name}' depends on '{dep}', which is not a step");
                };
                if !parents[child].contains(&parent) {
                    parents[child].push(parent);
                    children[parent].push(child);
                }
            }
        }
        if steps.is_empty() || parents.iter().all(|p| !p.is_empty()) {
            bail!("the DAG has no root step");
        }
        Ok(Self {
            len: steps.len(),
            parents,
            children,
        })
    }

    #[allow(clippy::len_without_is_empty)] // never empty: it has a root
    pub fn len(&self) -> usize {
        self.len
    }

    /// The steps a new task enqueues: those without dependencies.
    pub fn roots(&self) -> Vec<usize> {
        (0..self.len())
            .filter(|&s| self.parents[s].is_empty())
            .collect()
    }

    /// Marks `step` complete in `done` (one flag a step); the steps that
    /// became ready: its children whose every parent is now complete. A
    /// step already complete makes nothing ready again.
    pub fn complete(&self, done: &mut [bool], step: usize) -> Vec<usize> {
        if std::mem::replace(&mut done[step], true) {
            return Vec::new();
        }
        self.children[step]
            .iter()
            .copied()
            .filter(|&child| self.parents[child].iter().all(|&p| done[p]))
            .collect()
    }
}

/// One orchestration transaction: the results it consumes, the steps it
/// enqueues and the tasks it completes (ids and step indexes as the
/// floor's tables hold them).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Plan {
    pub results: Vec<(i64, i32)>,
    pub ready: Vec<(i64, i32)>,
    pub completed: Vec<i64>,
}

/// What the orchestrator knows of the tasks in flight: which of their
/// steps are complete (rebuilt from `floor.steps` when it starts), and the
/// tasks it completed since.
#[derive(Debug, Default)]
pub struct Progress {
    open: HashMap<i64, Vec<bool>>,
    finished: HashSet<i64>,
}

impl Progress {
    /// A step recorded complete before this orchestrator started.
    pub fn recorded(&mut self, dag: &Dag, task: i64, step: usize) {
        self.open
            .entry(task)
            .or_insert_with(|| vec![false; dag.len()])[step] = true;
    }

    /// Applies results (task, step) in order: each marks its step complete
    /// and enqueues what became ready; a task whose steps are all complete
    /// is completed. A result for a step already complete (seen twice:
    /// after a restart, in the scan and in a notification) is left out.
    pub fn apply(&mut self, dag: &Dag, results: impl IntoIterator<Item = (i64, i32)>) -> Plan {
        let mut plan = Plan::default();
        for (task, step) in results {
            if self.finished.contains(&task) {
                continue;
            }
            let Some(index) = usize::try_from(step).ok().filter(|&s| s < dag.len()) else {
                continue;
            };
            let done = self
                .open
                .entry(task)
                .or_insert_with(|| vec![false; dag.len()]);
            if done[index] {
                continue;
            }
            let ready = dag.complete(done, index);
            plan.results.push((task, step));
            plan.ready
                .extend(ready.into_iter().map(|s| (task, s as i32)));
            if done.iter().all(|&d| d) {
                self.open.remove(&task);
                self.finished.insert(task);
                plan.completed.push(task);
            }
        }
        plan
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn linear() -> Dag {
        Dag::new(&[
            ("s1", vec![]),
            ("s2", vec!["s1"]),
            ("s3", vec!["s2"]),
            ("s4", vec!["s3"]),
        ])
        .unwrap()
    }

    fn diamond() -> Dag {
        Dag::new(&[
            ("start", vec![]),
            ("left", vec!["start"]),
            ("right", vec!["start"]),
            ("end", vec!["left", "right"]),
        ])
        .unwrap()
    }

    #[test]
    fn a_linear_chain_makes_one_step_ready_at_a_time() {
        let dag = linear();
        assert_eq!(dag.roots(), [0]);
        let mut done = vec![false; 4];
        assert_eq!(dag.complete(&mut done, 0), [1]);
        assert_eq!(dag.complete(&mut done, 1), [2]);
        assert_eq!(dag.complete(&mut done, 2), [3]);
        assert!(dag.complete(&mut done, 3).is_empty());
        assert!(done.iter().all(|&d| d));
    }

    #[test]
    fn a_diamond_fans_out_then_joins_once_both_sides_are_complete() {
        let dag = diamond();
        assert_eq!(dag.roots(), [0]);
        let mut done = vec![false; 4];
        assert_eq!(dag.complete(&mut done, 0), [1, 2]);
        assert!(dag.complete(&mut done, 2).is_empty(), "left is not done");
        assert_eq!(dag.complete(&mut done, 1), [3]);
        // Completing a step twice makes nothing ready twice.
        assert!(dag.complete(&mut done, 1).is_empty());
    }

    #[test]
    fn a_fan_in_waits_for_every_parent_and_roots_are_all_parentless_steps() {
        let dag = Dag::new(&[
            ("a", vec![]),
            ("b", vec![]),
            ("c", vec![]),
            ("join", vec!["a", "b", "c"]),
            ("after_a", vec!["a"]),
        ])
        .unwrap();
        assert_eq!(dag.roots(), [0, 1, 2]);
        let mut done = vec![false; 5];
        assert_eq!(dag.complete(&mut done, 0), [4]);
        assert!(dag.complete(&mut done, 2).is_empty());
        assert_eq!(dag.complete(&mut done, 1), [3]);
    }

    #[test]
    fn the_shipped_templates_become_dags() {
        let linear = Dag::from_template(&tasker_scenarios::template("linear_workflow").unwrap());
        let linear = linear.unwrap();
        assert_eq!((linear.len(), linear.roots()), (4, vec![0]));
        let diamond = Dag::from_template(&tasker_scenarios::template("diamond_workflow").unwrap());
        let diamond = diamond.unwrap();
        let mut done = vec![false; 4];
        let root = diamond.roots()[0];
        assert_eq!(diamond.complete(&mut done, root).len(), 2);
        let conditional = tasker_scenarios::template("conditional_approval").unwrap();
        let error = Dag::from_template(&conditional).unwrap_err().to_string();
        assert!(error.contains("standard steps"), "{error}");
    }

    #[test]
    fn bad_dags_are_refused() {
        assert!(Dag::new(&[("a", vec!["b"])]).is_err(), "unknown dependency");
        assert!(Dag::new(&[("a", vec![]), ("a", vec![])]).is_err(), "twice");
        assert!(
            Dag::new(&[("a", vec!["b"]), ("b", vec!["a"])]).is_err(),
            "no root"
        );
    }

    #[test]
    fn a_batch_of_results_enqueues_what_became_ready_and_completes_tasks() {
        let dag = diamond();
        let mut progress = Progress::default();
        // Two tasks' roots in one batch.
        let plan = progress.apply(&dag, [(1, 0), (2, 0)]);
        assert_eq!(plan.results, [(1, 0), (2, 0)]);
        assert_eq!(plan.ready, [(1, 1), (1, 2), (2, 1), (2, 2)]);
        assert!(plan.completed.is_empty());
        // Both sides of task 1 in one batch: the join is enqueued once.
        let plan = progress.apply(&dag, [(1, 2), (1, 1), (2, 1)]);
        assert_eq!(plan.ready, [(1, 3)]);
        // A duplicate is left out; the last step completes the task.
        let plan = progress.apply(&dag, [(1, 3), (1, 3), (2, 2)]);
        assert_eq!(plan.results, [(1, 3), (2, 2)]);
        assert_eq!(plan.ready, [(2, 3)]);
        assert_eq!(plan.completed, [1]);
        assert_eq!(progress.open.len(), 1);
        // A late duplicate of a completed task's result changes nothing.
        assert_eq!(progress.apply(&dag, [(1, 1)]), Plan::default());
        let plan = progress.apply(&dag, [(2, 3)]);
        assert_eq!(plan.completed, [2]);
        assert!(progress.open.is_empty());
    }

    #[test]
    fn steps_recorded_before_a_restart_count_towards_readiness() {
        let dag = diamond();
        let mut progress = Progress::default();
        progress.recorded(&dag, 7, 0);
        progress.recorded(&dag, 7, 1);
        let plan = progress.apply(&dag, [(7, 2)]);
        assert_eq!(plan.ready, [(7, 3)]);
    }
}
