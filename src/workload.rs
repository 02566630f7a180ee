//! Workflow templates and their instantiation into DAG blocks.
//!
//! A template compiles once per run into [`Block`]s: a block is a small
//! DAG (one research-agent iteration, one single call, the user's DAG)
//! with per-node static data and the expected remaining critical path of
//! every node. Instantiating a workflow copies blocks, so per-workflow work
//! is a memcpy, not a graph analysis.

use std::collections::BTreeMap;

use crate::rng::{Stream, keyed, unit};
use crate::scenario::{DagSpec, Dist, Scenario, Template};
use crate::units::SimDuration;

/// One node of a block.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockNode {
    /// Index into the run's node-type table.
    pub node_type: u16,
    /// Prompt tokens.
    pub input_tokens: u32,
    /// Completion tokens.
    pub output_tokens: u32,
    /// Number of predecessors within the block.
    pub preds: u32,
    /// Template-specific tag (research agent: `pdf * subqueries + subquery`
    /// for extractions, used to key the evidence draw).
    pub tag: u32,
    /// Expected time from this node's start to the end of the block,
    /// including the node itself.
    pub rcp_in_block: SimDuration,
}

/// A small DAG instantiated as a unit.
#[derive(Clone, Debug, Default)]
pub struct Block {
    /// Nodes, in a topological order.
    pub nodes: Vec<BlockNode>,
    /// Successor lists, flattened; node `i` owns `succ[succ_off[i]..succ_off[i+1]]`.
    pub succ: Vec<u32>,
    /// Offsets into `succ`, `nodes.len() + 1` entries.
    pub succ_off: Vec<u32>,
    /// Expected critical path of the whole block.
    pub critical_path: SimDuration,
    /// Nodes without predecessors.
    pub roots: Vec<u32>,
}

impl Block {
    /// Successors of node `i` (block-local indices).
    pub fn successors(&self, i: usize) -> &[u32] {
        &self.succ[self.succ_off[i] as usize..self.succ_off[i + 1] as usize]
    }

    fn from_edges(
        nodes: Vec<BlockNode>,
        edges: &[(u32, u32)],
        expected_ms: &dyn Fn(&BlockNode) -> f64,
    ) -> Block {
        let n = nodes.len();
        let mut counts = vec![0u32; n + 1];
        for &(a, _) in edges {
            counts[a as usize + 1] += 1;
        }
        for i in 0..n {
            counts[i + 1] += counts[i];
        }
        let succ_off = counts.clone();
        let mut fill = counts;
        let mut succ = vec![0u32; edges.len()];
        for &(a, b) in edges {
            succ[fill[a as usize] as usize] = b;
            fill[a as usize] += 1;
        }
        let mut nodes = nodes;
        for n in nodes.iter_mut() {
            n.preds = 0;
        }
        for &(_, b) in edges {
            nodes[b as usize].preds += 1;
        }
        let roots = (0..n as u32)
            .filter(|&i| nodes[i as usize].preds == 0)
            .collect();
        let mut block = Block {
            nodes,
            succ,
            succ_off,
            critical_path: SimDuration::ZERO,
            roots,
        };
        // Nodes are in topological order, so a reverse sweep sees every
        // successor before its predecessors.
        let mut cp = SimDuration::ZERO;
        for i in (0..n).rev() {
            let own = SimDuration::from_ms(expected_ms(&block.nodes[i]));
            let after = block
                .successors(i)
                .iter()
                .map(|&s| block.nodes[s as usize].rcp_in_block)
                .max();
            let r = own + after.unwrap_or(SimDuration::ZERO);
            block.nodes[i].rcp_in_block = r;
            cp = cp.max(r);
        }
        block.critical_path = cp;
        block
    }
}

/// A compiled workload: blocks plus the stop rule.
#[derive(Clone, Debug)]
pub struct CompiledWorkload {
    /// The template.
    pub template: Template,
    /// Workflows in the run.
    pub workflows: u64,
    /// research_agent: block for iteration 0 and for later iterations;
    /// other templates: one block.
    pub blocks: Vec<Block>,
    /// Maximum iterations (1 for non-iterative templates).
    pub iters: u32,
    /// Extractions per iteration (research agent).
    pub extractions: u32,
    /// Relevant extractions (summed over iterations) that stop a workflow.
    pub stop_relevant: u32,
    /// Node type index of DecideNext (research agent).
    pub decide_type: Option<u16>,
    /// Node type index of ExtractEvidence (research agent).
    pub extract_type: Option<u16>,
}

impl CompiledWorkload {
    /// The block used for iteration `i`.
    pub fn block(&self, iteration: u32) -> &Block {
        &self.blocks[self.block_index(iteration)]
    }

    /// The index in `blocks` of the block used for iteration `i`.
    pub fn block_index(&self, iteration: u32) -> usize {
        (iteration as usize).min(self.blocks.len() - 1)
    }

    /// The nodes of the largest block.
    pub fn max_block_nodes(&self) -> usize {
        self.blocks.iter().map(|b| b.nodes.len()).max().unwrap_or(0)
    }

    /// Expected critical path of the iterations after `iteration`, counting
    /// every iteration that could still run.
    pub fn later_iterations_cp(&self, iteration: u32) -> SimDuration {
        let remaining = self.iters.saturating_sub(iteration + 1) as u64;
        SimDuration(self.block(1).critical_path.0.saturating_mul(remaining))
    }

    /// The workflow's evidence propensity: each extraction is relevant with
    /// this probability (drawn once per workflow, keyed).
    pub fn evidence_propensity(seed: u64, workflow: u64) -> f64 {
        unit(&mut keyed(seed, Stream::Workflow, [workflow, 0, 0, 0]))
    }

    /// Relevant extractions of one iteration: each extraction draws its own
    /// keyed evidence, so the count never depends on timing or policy.
    pub fn relevant_in_iteration(
        &self,
        seed: u64,
        workflow: u64,
        iteration: u32,
        propensity: f64,
    ) -> u32 {
        (0..self.extractions)
            .filter(|&tag| {
                unit(&mut keyed(
                    seed,
                    Stream::Evidence,
                    [workflow, iteration as u64, tag as u64, 0],
                )) < propensity
            })
            .count() as u32
    }
}

/// Per-type facts the workload compiler needs from the run's node table.
#[derive(Clone, Debug)]
pub struct TypeFacts {
    /// Index by name.
    pub index: BTreeMap<String, u16>,
    /// Latency distribution and expected tail factor of each type: the
    /// mean in ms at tier scale 1 is `dist.mean_ms(input, output) * tail_factor`.
    pub latency: Vec<(Dist, f64)>,
    /// Default (input, output) tokens.
    pub tokens: Vec<(u32, u32)>,
}

impl TypeFacts {
    /// Expected latency of a node of type `ty` with these token counts.
    pub fn mean_ms(&self, ty: u16, input_tokens: u32, output_tokens: u32) -> f64 {
        let (d, f) = &self.latency[ty as usize];
        d.mean_ms(input_tokens, output_tokens) * f
    }
}

/// Compiles the scenario's workload against the node-type table.
pub fn compile(s: &Scenario, facts: &TypeFacts) -> CompiledWorkload {
    let w = &s.workload;
    let scale = |t: u32| ((t as f64) * w.token_scale).round() as u32;
    let expected = |n: &BlockNode| facts.mean_ms(n.node_type, n.input_tokens, n.output_tokens);
    let node = |name: &str, tag: u32| {
        let ty = facts.index[name];
        let (i, o) = facts.tokens[ty as usize];
        BlockNode {
            node_type: ty,
            input_tokens: scale(i),
            output_tokens: scale(o),
            preds: 0,
            tag,
            rcp_in_block: SimDuration::ZERO,
        }
    };
    match w.template {
        Template::SingleCall => {
            let b = Block::from_edges(vec![node(&w.node_type, 0)], &[], &expected);
            CompiledWorkload {
                template: w.template,
                workflows: w.workflows,
                blocks: vec![b],
                iters: 1,
                extractions: 0,
                stop_relevant: 0,
                decide_type: None,
                extract_type: None,
            }
        }
        Template::Dag => {
            let dag = w.dag.as_ref().expect("validated: dag template has a dag");
            let order = topological_order(dag).expect("validated: dag is acyclic");
            // Renumber nodes in topological order; the trace reports the
            // position in the file, which `pos_of` maps back.
            let mut pos = vec![0u32; dag.nodes.len()];
            for (new, &old) in order.iter().enumerate() {
                pos[old] = new as u32;
            }
            let ids: BTreeMap<&str, usize> = dag
                .nodes
                .iter()
                .enumerate()
                .map(|(i, n)| (n.id.as_str(), i))
                .collect();
            let nodes: Vec<BlockNode> = order
                .iter()
                .map(|&old| {
                    let spec = &dag.nodes[old];
                    let mut n = node(&spec.node_type, old as u32);
                    if let Some(t) = spec.input_tokens {
                        n.input_tokens = scale(t);
                    }
                    if let Some(t) = spec.output_tokens {
                        n.output_tokens = scale(t);
                    }
                    n
                })
                .collect();
            let edges: Vec<(u32, u32)> = dag
                .edges
                .iter()
                .map(|[a, b]| (pos[ids[a.as_str()]], pos[ids[b.as_str()]]))
                .collect();
            CompiledWorkload {
                template: w.template,
                workflows: w.workflows,
                blocks: vec![Block::from_edges(nodes, &edges, &expected)],
                iters: 1,
                extractions: 0,
                stop_relevant: 0,
                decide_type: None,
                extract_type: None,
            }
        }
        Template::ResearchAgent => {
            let (p, k) = (w.pdfs, w.subqueries);
            let mut blocks = Vec::new();
            for first in [true, false] {
                let mut nodes = Vec::with_capacity((3 + 3 * p + 2 * p * k) as usize);
                let mut edges = Vec::new();
                let mut plan = node("Plan", 0);
                // The seed's Plan output-size estimate, which shifts Plan's latency.
                let est = if first {
                    200 + 10 * k + 3 * p
                } else {
                    220 + 15 * k + 4 * p
                };
                plan.output_tokens = scale(est);
                nodes.push(plan);
                let mut extracts = Vec::new();
                for pdf in 0..p {
                    let load = nodes.len() as u32;
                    nodes.push(node("LoadPDF", pdf));
                    nodes.push(node("Chunk", pdf));
                    nodes.push(node("Embed", pdf));
                    edges.extend([(0, load), (load, load + 1), (load + 1, load + 2)]);
                    for q in 0..k {
                        let search = nodes.len() as u32;
                        nodes.push(node("SimilaritySearch", pdf * k + q));
                        nodes.push(node("ExtractEvidence", pdf * k + q));
                        edges.extend([(load + 2, search), (search, search + 1)]);
                        extracts.push(search + 1);
                    }
                }
                let agg = nodes.len() as u32;
                nodes.push(node("Aggregate", 0));
                nodes.push(node("DecideNext", 0));
                edges.extend(extracts.iter().map(|&e| (e, agg)));
                edges.push((agg, agg + 1));
                blocks.push(Block::from_edges(nodes, &edges, &expected));
            }
            let extractions = p * k;
            CompiledWorkload {
                template: w.template,
                workflows: w.workflows,
                blocks,
                iters: w.iters,
                extractions,
                stop_relevant: ((w.stop_evidence_fraction * extractions as f64).ceil() as u32)
                    .max(1),
                decide_type: Some(facts.index["DecideNext"]),
                extract_type: Some(facts.index["ExtractEvidence"]),
            }
        }
    }
}

/// A topological order of the DAG's nodes (indices into `dag.nodes`), ties
/// broken by file order; an error names a node on a cycle.
pub fn topological_order(dag: &DagSpec) -> Result<Vec<usize>, String> {
    let ids: BTreeMap<&str, usize> = dag
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id.as_str(), i))
        .collect();
    let n = dag.nodes.len();
    let mut indeg = vec![0usize; n];
    let mut succ = vec![Vec::new(); n];
    for [a, b] in &dag.edges {
        let (Some(&a), Some(&b)) = (ids.get(a.as_str()), ids.get(b.as_str())) else {
            return Err("edge names an unknown node id".into());
        };
        succ[a].push(b);
        indeg[b] += 1;
    }
    let mut ready: std::collections::BTreeSet<usize> = (0..n).filter(|&i| indeg[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &s in &succ[i] {
            indeg[s] -= 1;
            if indeg[s] == 0 {
                ready.insert(s);
            }
        }
    }
    if order.len() < n {
        let on_cycle = (0..n).find(|&i| indeg[i] > 0).expect("some node left");
        return Err(format!(
            "the edges form a cycle through node `{}`",
            dag.nodes[on_cycle].id
        ));
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::DagNode;

    fn dag(edges: &[(&str, &str)]) -> DagSpec {
        let mut names: Vec<&str> = edges.iter().flat_map(|(a, b)| [*a, *b]).collect();
        names.sort();
        names.dedup();
        DagSpec {
            nodes: names
                .iter()
                .map(|n| DagNode {
                    id: n.to_string(),
                    node_type: "T".into(),
                    input_tokens: None,
                    output_tokens: None,
                })
                .collect(),
            edges: edges
                .iter()
                .map(|(a, b)| [a.to_string(), b.to_string()])
                .collect(),
        }
    }

    #[test]
    fn topological_order_respects_edges_and_finds_cycles() {
        let d = dag(&[("c", "a"), ("a", "b"), ("c", "b")]);
        let order = topological_order(&d).unwrap();
        let pos = |id: &str| order.iter().position(|&i| d.nodes[i].id == id).unwrap();
        assert!(pos("c") < pos("a") && pos("a") < pos("b"));
        let e = topological_order(&dag(&[("a", "b"), ("b", "a")])).unwrap_err();
        assert!(e.contains("cycle"), "{e}");
    }

    #[test]
    fn research_block_has_the_seed_shape_and_critical_path() {
        let s = Scenario::default_research_agent();
        let table = crate::sim::NodeTable::build(&s);
        let cw = compile(&s, &table.facts());
        let (p, k) = (s.workload.pdfs, s.workload.subqueries);
        for b in &cw.blocks {
            assert_eq!(b.nodes.len() as u32, 3 + 3 * p + 2 * p * k);
            // Plan is the only root and DecideNext the only sink.
            assert_eq!(b.nodes.iter().filter(|n| n.preds == 0).count(), 1);
            assert_eq!(b.nodes[0].rcp_in_block, b.critical_path);
            let last = b.nodes.len() - 1;
            assert!(b.successors(last).is_empty());
            // Aggregate waits for every extraction.
            assert_eq!(b.nodes[last - 1].preds, p * k);
        }
        // Plan outputs more tokens in later iterations.
        assert!(cw.blocks[1].nodes[0].output_tokens > cw.blocks[0].nodes[0].output_tokens);
        assert_eq!(cw.stop_relevant, (0.6f64 * (p * k) as f64).ceil() as u32);
    }

    #[test]
    fn rcp_is_longest_path_to_the_end() {
        // a(10) -> b(20) -> d(5); a -> c(1) -> d
        let nodes: Vec<BlockNode> = [10.0, 20.0, 1.0, 5.0]
            .iter()
            .map(|&ms| BlockNode {
                node_type: 0,
                input_tokens: ms as u32,
                output_tokens: 0,
                preds: 0,
                tag: 0,
                rcp_in_block: SimDuration::ZERO,
            })
            .collect();
        let b = Block::from_edges(nodes, &[(0, 1), (0, 2), (1, 3), (2, 3)], &|n| {
            n.input_tokens as f64
        });
        let rcp: Vec<u64> = b.nodes.iter().map(|n| n.rcp_in_block.0 / 1000).collect();
        assert_eq!(rcp, vec![35, 25, 6, 5]);
        assert_eq!(b.critical_path.0, 35_000);
        assert_eq!(b.nodes[3].preds, 2);
    }
}
