//! The step graph as indices: cycle detection (the whole cycle, in order),
//! transitive dependencies, and the execution order (dependencies first,
//! then file order). Pure functions over `needs` lists; no YAML here.

use std::collections::BTreeSet;

/// `needs[i]` lists the indices step `i` depends on.
pub struct Graph<'a> {
    pub needs: &'a [Vec<usize>],
}

impl Graph<'_> {
    /// Every cycle found, each as a list of indices `a, b, …` meaning
    /// `a needs b needs … needs a`. Each cycle is reported once.
    pub fn cycles(&self) -> Vec<Vec<usize>> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            OnStack,
            Done,
        }
        let n = self.needs.len();
        let mut marks = vec![Mark::New; n];
        let mut cycles = Vec::new();
        let mut seen: BTreeSet<Vec<usize>> = BTreeSet::new();
        for root in 0..n {
            if marks[root] != Mark::New {
                continue;
            }
            // Iterative DFS: (node, next child index); `path` mirrors the stack.
            let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
            marks[root] = Mark::OnStack;
            while let Some(&mut (node, ref mut child)) = stack.last_mut() {
                if let Some(&next) = self.needs[node].get(*child) {
                    *child += 1;
                    match marks[next] {
                        Mark::New => {
                            marks[next] = Mark::OnStack;
                            stack.push((next, 0));
                        }
                        Mark::OnStack => {
                            let start = stack.iter().position(|&(s, _)| s == next).unwrap_or(0);
                            let cycle: Vec<usize> =
                                stack[start..].iter().map(|&(s, _)| s).collect();
                            let mut key = cycle.clone();
                            key.sort_unstable();
                            if seen.insert(key) {
                                cycles.push(rotate_to_min(cycle));
                            }
                        }
                        Mark::Done => {}
                    }
                } else {
                    marks[node] = Mark::Done;
                    stack.pop();
                }
            }
        }
        cycles
    }

    /// For each step, every step it depends on directly or indirectly.
    /// Only meaningful for an acyclic graph.
    pub fn ancestors(&self) -> Vec<BTreeSet<usize>> {
        let order = self.order();
        let mut result: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); self.needs.len()];
        for &i in &order {
            let mut all = BTreeSet::new();
            for &dep in &self.needs[i] {
                all.insert(dep);
                all.extend(result[dep].iter().copied());
            }
            result[i] = all;
        }
        result
    }

    /// Execution order: a step comes after everything it needs; among steps
    /// that are ready, file order decides. Steps on a cycle are left out.
    pub fn order(&self) -> Vec<usize> {
        let n = self.needs.len();
        let mut placed = vec![false; n];
        let mut order = Vec::with_capacity(n);
        loop {
            let next = (0..n).find(|&i| !placed[i] && self.needs[i].iter().all(|&d| placed[d]));
            match next {
                Some(i) => {
                    placed[i] = true;
                    order.push(i);
                }
                None => return order,
            }
        }
    }
}

/// Starts the cycle at its smallest index, so the report is stable.
fn rotate_to_min(mut cycle: Vec<usize>) -> Vec<usize> {
    if let Some(min_at) = cycle
        .iter()
        .enumerate()
        .min_by_key(|(_, v)| **v)
        .map(|(i, _)| i)
    {
        cycle.rotate_left(min_at);
    }
    cycle
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_whole_cycles() {
        // 0 -> 1 -> 2 -> 0, and 3 standalone needing 0
        let needs = vec![vec![1], vec![2], vec![0], vec![0]];
        let g = Graph { needs: &needs };
        assert_eq!(g.cycles(), vec![vec![0, 1, 2]]);
    }

    #[test]
    fn self_cycle() {
        let needs = vec![vec![0]];
        assert_eq!(Graph { needs: &needs }.cycles(), vec![vec![0]]);
    }

    #[test]
    fn order_is_dependencies_then_file_order() {
        // diamond: 0 needs 1 and 2; 1 and 2 need 3
        let needs = vec![vec![1, 2], vec![3], vec![3], vec![]];
        let g = Graph { needs: &needs };
        assert_eq!(g.order(), vec![3, 1, 2, 0]);
        assert!(g.cycles().is_empty());
        let anc = g.ancestors();
        assert_eq!(anc[0], BTreeSet::from([1, 2, 3]));
        assert!(anc[3].is_empty());
    }
}
