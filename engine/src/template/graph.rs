//! The dependency graph over a template's steps: topological order and the
//! cycle search.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};

use super::{StepTemplate, TaskTemplate};

impl TaskTemplate {
    /// Steps in dependency order (Kahn's algorithm; among steps ready at the
    /// same time, the one declared first comes first). For a valid template
    /// this is every step; for a template with a cycle, the steps on or
    /// behind the cycle are left out. Unknown dependencies are ignored.
    pub fn topological_order(&self) -> Vec<&StepTemplate> {
        let graph = Graph::new(self);
        let n = self.steps.len();
        let mut indegree: Vec<usize> = graph.deps.iter().map(|d| d.len()).collect();
        let mut ready: BinaryHeap<Reverse<usize>> =
            (0..n).filter(|&i| indegree[i] == 0).map(Reverse).collect();
        let mut order = Vec::with_capacity(n);
        while let Some(Reverse(i)) = ready.pop() {
            order.push(&self.steps[i]);
            for &j in &graph.dependents[i] {
                indegree[j] -= 1;
                if indegree[j] == 0 {
                    ready.push(Reverse(j));
                }
            }
        }
        order
    }

    /// Steps on the longest chain of dependencies: as many as the steps
    /// when they run one after another, fewer when some can run at the same
    /// time (a diamond: 3 of 4). 0 for no steps.
    pub fn critical_path_len(&self) -> usize {
        let mut depth: BTreeMap<&str, usize> = BTreeMap::new();
        for step in self.topological_order() {
            let after = step
                .dependencies
                .iter()
                .filter_map(|d| depth.get(d.as_str()));
            depth.insert(&step.name, 1 + after.max().copied().unwrap_or(0));
        }
        depth.into_values().max().unwrap_or(0)
    }

    /// Reports one cycle per strongly connected group of steps, naming the
    /// steps in dependency order, starting from the first declared one.
    /// Self-dependencies are reported by `check_steps`.
    pub(super) fn check_cycles(&self, problems: &mut Vec<String>) {
        let graph = Graph::new(self);
        let n = self.steps.len();
        // Kahn's algorithm leaves exactly the steps on or behind a cycle.
        let mut remaining = vec![true; n];
        let mut indegree: Vec<usize> = graph.deps.iter().map(|d| d.len()).collect();
        let mut queue: VecDeque<usize> = (0..n).filter(|&i| indegree[i] == 0).collect();
        while let Some(i) = queue.pop_front() {
            remaining[i] = false;
            for &j in &graph.dependents[i] {
                indegree[j] -= 1;
                if indegree[j] == 0 {
                    queue.push_back(j);
                }
            }
        }

        let mut done = vec![false; n];
        for start in 0..n {
            if !remaining[start] || done[start] {
                continue;
            }
            // Shortest path start -> ... -> start along dependency edges.
            let forward = bfs(start, &graph.dependents, &remaining);
            let Some(last) = forward.closing else {
                done[start] = true;
                continue;
            };
            let mut cycle = vec![start];
            let mut at = last;
            while at != start {
                cycle.push(at);
                at = forward.parent[at].expect("reached node has a parent");
            }
            cycle[1..].reverse();
            cycle.push(start);
            // Mark the whole group (reachable both ways) as reported.
            let backward = bfs(start, &graph.deps, &remaining);
            for (i, done) in done.iter_mut().enumerate() {
                if forward.reached[i] && backward.reached[i] {
                    *done = true;
                }
            }
            done[start] = true;
            let names: Vec<&str> = cycle.iter().map(|&i| self.steps[i].name.as_str()).collect();
            problems.push(format!(
                "dependency cycle: {} (each step depends on the one before it)",
                names.join(" -> ")
            ));
        }
    }
}

/// Dependency graph over step indices. Names resolve to their first
/// declaration; unknown dependencies are dropped; self-dependencies are kept
/// as edges (so such a step is never ready) but skipped by the cycle search.
struct Graph {
    /// `deps[i]`: distinct steps step `i` depends on.
    deps: Vec<Vec<usize>>,
    /// `dependents[i]`: steps depending on step `i`.
    dependents: Vec<Vec<usize>>,
}

impl Graph {
    fn new(template: &TaskTemplate) -> Graph {
        let n = template.steps.len();
        // Ordered, not hashed: a HashMap's per-process random seed made
        // parsing's instruction count vary between runs (callgrind).
        let mut index: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, step) in template.steps.iter().enumerate() {
            index.entry(step.name.as_str()).or_insert(i);
        }
        let mut deps = vec![Vec::new(); n];
        let mut dependents = vec![Vec::new(); n];
        for (i, step) in template.steps.iter().enumerate() {
            let distinct: BTreeSet<usize> = step
                .dependencies
                .iter()
                .filter_map(|d| index.get(d.as_str()).copied())
                .collect();
            for j in distinct {
                deps[i].push(j);
                dependents[j].push(i);
            }
        }
        Graph { deps, dependents }
    }
}

struct Bfs {
    reached: Vec<bool>,
    parent: Vec<Option<usize>>,
    /// A reached node with an edge back to the start (not the start itself).
    closing: Option<usize>,
}

fn bfs(start: usize, edges: &[Vec<usize>], allowed: &[bool]) -> Bfs {
    let n = edges.len();
    let mut reached = vec![false; n];
    let mut parent = vec![None; n];
    let mut closing = None;
    let mut queue = VecDeque::from([start]);
    reached[start] = true;
    while let Some(u) = queue.pop_front() {
        for &v in &edges[u] {
            if v == start {
                if u != start && closing.is_none() {
                    closing = Some(u);
                }
            } else if allowed[v] && !reached[v] {
                reached[v] = true;
                parent[v] = Some(u);
                queue.push_back(v);
            }
        }
    }
    Bfs {
        reached,
        parent,
        closing,
    }
}
