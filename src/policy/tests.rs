//! Policy decisions against a hand-built view: no engine involved.

use super::*;
use std::cell::RefCell;
use std::collections::BTreeMap;

/// A view with fixed tier loads and a table of call facts.
struct MockView {
    now: SimTime,
    loads: Vec<Vec<TierLoad>>,
    calls: BTreeMap<CallKey, ReadyCall>,
    running: RefCell<Vec<AttemptKey>>,
}

impl SystemView for MockView {
    fn now(&self) -> SimTime {
        self.now
    }
    fn tier_load(&self, p: u16, t: u16) -> TierLoad {
        self.loads[p as usize][t as usize]
    }
    fn remote_in_flight(&self) -> u32 {
        self.loads.iter().flatten().map(|l| l.in_flight).sum()
    }
    fn call_waiting(&self, call: CallKey) -> bool {
        self.calls.contains_key(&call)
    }
    fn attempt_running(&self, a: AttemptKey) -> bool {
        self.running.borrow().contains(&a)
    }
    fn call_facts(&self, call: CallKey) -> ReadyCall {
        self.calls[&call]
    }
}

fn load(in_flight: u32, slots: u32) -> TierLoad {
    TierLoad {
        in_flight,
        slots,
        tokens: u32::MAX,
        next_token_at: SimTime::ZERO,
        token_bucket: None,
    }
}

/// One provider: tier 0 cheap and slow, tier 1 expensive and twice as fast.
fn setup(kind: PolicyKind, ablations: Ablations, constants: Constants) -> PolicySetup {
    PolicySetup {
        kind,
        ablations,
        constants,
        providers: vec![vec![
            TierInfo {
                latency_scale: 1.0,
                prices: (0.01, 0.0, 0.0),
                models: vec![(1.0, 1.0)],
                quality: vec![None],
                token_limit: false,
                request_limit: false,
            },
            TierInfo {
                latency_scale: 0.5,
                prices: (0.05, 0.0, 0.0),
                models: vec![(1.0, 1.0)],
                quality: vec![None],
                token_limit: false,
                request_limit: false,
            },
        ]],
        node_types: vec![NodeTypeInfo {
            prior_p50_ms: 1000.0,
            prior_p95_ms: 3000.0,
        }],
        // No model has a quality curve.
        redos_possible: false,
    }
}

/// The `full` policy with default constants on [`setup`]'s provider.
fn full_policy() -> Policy {
    Policy::new(setup(
        PolicyKind::Full,
        Ablations::default(),
        Constants::default(),
    ))
}

fn call(wf: u64, arrival_s: f64, rcp_s: f64) -> ReadyCall {
    ReadyCall {
        call: CallKey {
            slot: wf as u32,
            generation: 0,
            node: 0,
        },
        workflow_id: wf,
        provider: 0,
        node_type: 0,
        workflow_arrival: SimTime(SimDuration::from_secs_f64(arrival_s).0),
        remaining_cp: SimDuration::from_secs_f64(rcp_s),
        slack: SimDuration::ZERO,
        difficulty: 0.0,
        workflow_spent: Money::ZERO,
        input_tokens: 0,
        output_tokens: 0,
        redos: 0,
    }
}

fn view(loads: Vec<TierLoad>, calls: &[ReadyCall]) -> MockView {
    MockView {
        now: SimTime(100_000_000),
        loads: vec![loads],
        calls: calls.iter().map(|c| (c.call, *c)).collect(),
        running: RefCell::new(vec![]),
    }
}

fn started(d: &[Decision]) -> Vec<(u64, u16, StartKind)> {
    d.iter()
        .filter_map(|d| match *d {
            Decision::Start {
                call, tier, kind, ..
            } => Some((call.slot as u64, tier, kind)),
            Decision::WakeAt(_) => None,
        })
        .collect()
}

/// Queues `calls` while both tiers are full, then frees `free0` slots on
/// tier 0 and `free1` on tier 1 and dispatches.
fn queue_then_dispatch(
    p: &mut Policy,
    calls: &[ReadyCall],
    free0: u32,
    free1: u32,
) -> Vec<(u64, u16, StartKind)> {
    let full = view(vec![load(2, 2), load(4, 4)], calls);
    let mut out = vec![];
    for c in calls {
        p.on_ready(&full, *c, &mut out);
    }
    assert!(out.is_empty(), "nothing starts while every tier is full");
    let freed = view(vec![load(2 - free0, 2), load(4 - free1, 4)], calls);
    p.dispatch(&freed, &mut out);
    started(&out)
}

#[test]
fn ready_call_goes_to_cheapest_tier_with_free_capacity() {
    let mut p = Policy::new(setup(
        PolicyKind::FifoCheapest,
        Ablations::default(),
        Constants::default(),
    ));
    let c = call(1, 0.0, 1.0);
    let mut out = vec![];
    p.on_ready(&view(vec![load(0, 2), load(0, 4)], &[c]), c, &mut out);
    assert_eq!(started(&out), vec![(1, 0, StartKind::Primary)]);
    let mut out = vec![];
    p.on_ready(&view(vec![load(2, 2), load(0, 4)], &[c]), c, &mut out);
    assert_eq!(
        started(&out),
        vec![(1, 1, StartKind::Primary)],
        "tier 0 full: the next cheapest with a slot"
    );
}

#[test]
fn fifo_serves_oldest_workflow_first() {
    let mut p = Policy::new(setup(
        PolicyKind::FifoCheapest,
        Ablations::default(),
        Constants::default(),
    ));
    let calls = [call(3, 5.0, 9.0), call(1, 1.0, 1.0), call(2, 3.0, 50.0)];
    let got = queue_then_dispatch(&mut p, &calls, 2, 0);
    assert_eq!(
        got,
        vec![(1, 0, StartKind::Primary), (2, 0, StartKind::Primary)]
    );
}

#[test]
fn dag_priority_orders_by_remaining_critical_path() {
    let c = Constants {
        alpha: 1.0,
        beta: 0.0,
        gamma: 0.0,
        ..Constants::default()
    };
    let mut p = Policy::new(setup(
        PolicyKind::DagCheapest,
        Ablations::default(),
        c.clone(),
    ));
    let calls = [call(1, 0.0, 2.0), call(2, 0.0, 30.0), call(3, 0.0, 10.0)];
    let got = queue_then_dispatch(&mut p, &calls, 2, 0);
    assert_eq!(
        got.iter().map(|g| g.0).collect::<Vec<_>>(),
        vec![2, 3],
        "longest remaining path first"
    );

    // The ablation falls back to workflow age (ids break arrival ties).
    let ab = Ablations {
        disable_dag_priority: true,
        ..Ablations::default()
    };
    let mut p = Policy::new(setup(PolicyKind::DagCheapest, ab, c));
    let got = queue_then_dispatch(&mut p, &calls, 2, 0);
    assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), vec![1, 2]);
}

#[test]
fn age_term_is_exact_across_enqueue_times() {
    // gamma only: the older workflow wins whatever the enqueue order.
    let c = Constants {
        alpha: 0.0,
        beta: 0.0,
        gamma: 1.0,
        ..Constants::default()
    };
    let mut p = Policy::new(setup(PolicyKind::DagCheapest, Ablations::default(), c));
    let calls = [call(1, 50.0, 1.0), call(2, 10.0, 1.0)];
    let got = queue_then_dispatch(&mut p, &calls, 1, 0);
    assert_eq!(got, vec![(2, 0, StartKind::Primary)]);
}

#[test]
fn escalation_moves_waiting_calls_to_a_faster_tier() {
    // Queue waits on tier 0 have been long: escalating saves far more than 0.5 s.
    let mut p = Policy::new(setup(
        PolicyKind::DagEscalation,
        Ablations::default(),
        Constants::default(),
    ));
    for _ in 0..50 {
        p.on_attempt_end(|| AttemptEnded {
            provider: 0,
            tier: 0,
            node_type: 0,
            queue_wait: SimDuration::from_ms(20_000.0),
            service: SimDuration::from_ms(1000.0),
            success: true,
            measured: true,
            kind: StartKind::Primary,
        });
    }
    let calls = [call(1, 0.0, 1.0), call(2, 0.0, 1.0)];
    let got = queue_then_dispatch(&mut p, &calls, 0, 1);
    assert_eq!(
        got,
        vec![(1, 1, StartKind::Escalated)],
        "one fast slot free: the head moves there"
    );

    // dag_cheapest never escalates, nor does the ablation.
    for (kind, ab) in [
        (PolicyKind::DagCheapest, Ablations::default()),
        (
            PolicyKind::DagEscalation,
            Ablations {
                disable_escalation: true,
                ..Ablations::default()
            },
        ),
    ] {
        let mut p = Policy::new(setup(kind, ab, Constants::default()));
        assert!(
            queue_then_dispatch(&mut p, &calls, 0, 1).is_empty(),
            "{kind:?}"
        );
    }
}

#[test]
fn escalation_needs_the_saving_to_be_worth_the_price() {
    // No observed waits: saving = p50(slow) - p50(fast) = 0.5 s; at $0.02/s that
    // is worth $0.01, less than the $0.04 price difference.
    let mut p = Policy::new(setup(
        PolicyKind::DagEscalation,
        Ablations::default(),
        Constants::default(),
    ));
    let calls = [call(1, 0.0, 1.0)];
    assert!(queue_then_dispatch(&mut p, &calls, 0, 1).is_empty());
    // Value time ten times more: now it is worth it.
    let c = Constants {
        time_value_per_s: 0.2,
        ..Constants::default()
    };
    let mut p = Policy::new(setup(PolicyKind::DagEscalation, Ablations::default(), c));
    assert_eq!(
        queue_then_dispatch(&mut p, &calls, 0, 1),
        vec![(1, 1, StartKind::Escalated)]
    );
}

fn attempt_key(slot: u32) -> AttemptKey {
    AttemptKey {
        slot,
        generation: 0,
    }
}

/// Attempt `a` of call `c`, a primary start on the slow tier.
fn primary_on_slow_tier(c: ReadyCall, a: AttemptKey) -> AttemptStarted {
    AttemptStarted {
        call: c.call,
        attempt: a,
        provider: 0,
        tier: 0,
        model: 0,
        ready: c,
        kind: StartKind::Primary,
    }
}

fn hedge_scenario(ab: Ablations) -> Vec<(u64, u16, StartKind)> {
    let mut p = Policy::new(setup(PolicyKind::Full, ab, Constants::default()));
    let c = call(1, 0.0, 1.0);
    let v = view(vec![load(1, 2), load(0, 4)], &[c]);
    let a = attempt_key(0);
    v.running.borrow_mut().push(a);
    let mut out = vec![];
    p.on_started(&v, primary_on_slow_tier(c, a), SimTime::ZERO, &mut out);
    // Before the deadline (1.5 x p95 = 4.5 s): nothing.
    let mut early = view(vec![load(1, 2), load(0, 4)], &[]);
    early.now = SimTime(4_000_000);
    early.running.borrow_mut().push(a);
    let mut out2 = vec![];
    p.dispatch(&early, &mut out2);
    assert!(started(&out2).is_empty());
    let mut late = view(vec![load(1, 2), load(0, 4)], &[]);
    late.now = SimTime(4_600_000);
    late.running.borrow_mut().push(a);
    let mut out3 = vec![];
    p.dispatch(&late, &mut out3);
    let mut all = started(&out);
    all.extend(started(&out3));
    if !ab.disable_hedging {
        assert!(
            out.contains(&Decision::WakeAt(SimTime(4_500_000))),
            "asks to be woken at the deadline"
        );
    }
    all
}

#[test]
fn full_hedges_a_slow_call_on_a_faster_tier_unless_disabled() {
    assert_eq!(
        hedge_scenario(Ablations::default()),
        vec![(1, 1, StartKind::Hedge)]
    );
    assert!(
        hedge_scenario(Ablations {
            disable_hedging: true,
            ..Ablations::default()
        })
        .is_empty()
    );
}

#[test]
fn a_pass_woken_only_by_the_deadline_of_an_ended_attempt_is_skipped() {
    let mut p = full_policy();
    let (c1, c2) = (call(1, 0.0, 1.0), call(2, 0.0, 1.0));
    let (a1, a2) = (attempt_key(1), attempt_key(2));
    let at = |secs: f64, running: &[AttemptKey]| {
        let mut v = view(vec![load(2, 2), load(0, 4)], &[]);
        v.now = SimTime(SimDuration::from_secs_f64(secs).0);
        v.running.borrow_mut().extend_from_slice(running);
        v
    };
    let mut out = vec![];
    // Both on the slow tier, critical: hedge deadlines at 1.5 x p95 = 4.5 s
    // after each start (0 s and 1 s).
    for (c, a, start) in [(c1, a1, 0.0), (c2, a2, 1.0)] {
        let v = at(start, &[a1, a2]);
        p.on_started(&v, primary_on_slow_tier(c, a), v.now, &mut out);
    }
    p.dispatch(&at(1.0, &[a1, a2]), &mut out);
    assert_eq!(p.passes(), 1);
    // The first attempt ends: a pass, which finds nothing to start.
    p.on_attempt_end(|| AttemptEnded {
        provider: 0,
        tier: 0,
        node_type: 0,
        queue_wait: SimDuration::ZERO,
        service: SimDuration::from_secs_f64(2.0),
        success: true,
        measured: false,
        kind: StartKind::Primary,
    });
    out.clear();
    p.dispatch(&at(2.0, &[a2]), &mut out);
    assert_eq!(p.passes(), 2);
    assert!(started(&out).is_empty());
    // Its deadline comes: no pass, nothing started.
    p.dispatch(&at(4.6, &[a2]), &mut out);
    assert_eq!(p.passes(), 2, "the ended attempt's deadline wakes no pass");
    assert!(started(&out).is_empty());
    // The second one's deadline, its attempt still running: a pass that
    // hedges it on the free fast tier.
    p.dispatch(&at(5.6, &[a2]), &mut out);
    assert_eq!(p.passes(), 3);
    assert_eq!(started(&out), vec![(2, 1, StartKind::Hedge)]);
}

#[test]
fn due_hedges_wait_while_no_tier_has_room_and_start_in_order_when_one_frees() {
    let mut p = full_policy();
    let (c1, c2) = (call(1, 0.0, 1.0), call(2, 0.0, 1.0));
    let (a1, a2) = (attempt_key(1), attempt_key(2));
    // Both tiers full, or the fast one with `fast_free` slots.
    let at = |secs: f64, fast_free: u32| {
        let mut v = view(vec![load(2, 2), load(4 - fast_free, 4)], &[]);
        v.now = SimTime(SimDuration::from_secs_f64(secs).0);
        v.running.borrow_mut().extend_from_slice(&[a1, a2]);
        v
    };
    let mut out = vec![];
    for (c, a, start) in [(c1, a1, 0.0), (c2, a2, 1.0)] {
        let v = at(start, 0);
        p.on_started(&v, primary_on_slow_tier(c, a), v.now, &mut out);
    }
    // What an attempt of another call reports as it ends on the fast tier.
    let fast_end = AttemptEnded {
        provider: 0,
        tier: 1,
        node_type: 0,
        queue_wait: SimDuration::ZERO,
        service: SimDuration::from_secs_f64(0.5),
        success: true,
        measured: false,
        kind: StartKind::Primary,
    };
    // Both deadlines (4.5 s and 5.5 s) have come; no tier has room.
    out.clear();
    p.dispatch(&at(6.0, 0), &mut out);
    assert!(started(&out).is_empty(), "no room: nothing hedged");
    // A pass after an attempt end elsewhere, still no room: still nothing.
    p.on_attempt_end(|| fast_end);
    p.dispatch(&at(6.5, 0), &mut out);
    assert!(started(&out).is_empty(), "still no room");
    // One fast slot frees: the earlier deadline's call gets it, the other
    // stays due and takes the next.
    p.on_attempt_end(|| fast_end);
    p.dispatch(&at(7.0, 1), &mut out);
    assert_eq!(started(&out), vec![(1, 1, StartKind::Hedge)]);
    out.clear();
    p.on_attempt_end(|| fast_end);
    p.dispatch(&at(7.5, 1), &mut out);
    assert_eq!(started(&out), vec![(2, 1, StartKind::Hedge)]);
}

#[test]
fn model_routing_picks_the_cheap_model_for_easy_calls_within_budget() {
    let mut s = setup(
        PolicyKind::FifoCheapest,
        Ablations {
            enable_model_routing: true,
            ..Ablations::default()
        },
        Constants::default(),
    );
    s.providers[0][0].models = vec![(1.0, 1.0), (0.2, 0.6)];
    let p = Policy::new(s);
    let mut easy = call(1, 0.0, 1.0);
    easy.difficulty = 0.1;
    let mut hard = easy;
    hard.difficulty = 0.9;
    assert_eq!(p.model_for(&easy, 0, 0), 1);
    assert_eq!(p.model_for(&hard, 0, 0), 0);
    hard.workflow_spent = Money::from_dollars(9.995);
    assert_eq!(
        p.model_for(&hard, 0, 0),
        1,
        "over budget: the cheapest model"
    );
}

#[test]
fn retry_backoff_doubles() {
    let p = full_policy();
    assert_eq!(p.retry_delay(1), SimDuration::from_ms(100.0));
    assert_eq!(p.retry_delay(3), SimDuration::from_ms(400.0));
}

#[test]
fn desc_key_orders_scores_descending() {
    let xs = [-5.0, -0.0, 0.0, 0.5, 3.0, 1e9];
    for w in xs.windows(2) {
        assert!(desc_key(w[0]) >= desc_key(w[1]), "{w:?}");
    }
}

#[test]
fn a_pass_that_uses_the_last_token_asks_to_wake_for_the_next() {
    let mut s = setup(
        PolicyKind::FifoCheapest,
        Ablations::default(),
        Constants::default(),
    );
    s.providers[0][0].request_limit = true;
    let mut p = Policy::new(s);
    let calls = [call(1, 0.0, 1.0), call(2, 0.0, 1.0), call(3, 0.0, 1.0)];
    let full = view(vec![load(2, 2), load(4, 4)], &calls);
    let mut out = vec![];
    for c in &calls {
        p.on_ready(&full, *c, &mut out);
    }
    assert!(out.is_empty());
    // Tier 0 frees both slots but holds one token; the next comes at 100.2 s.
    let next = SimTime(100_200_000);
    let mut limited = view(vec![load(0, 2), load(4, 4)], &calls);
    limited.loads[0][0].tokens = 1;
    limited.loads[0][0].next_token_at = next;
    p.on_attempt_end(|| AttemptEnded {
        provider: 0,
        tier: 0,
        node_type: 0,
        queue_wait: SimDuration::ZERO,
        service: SimDuration::from_ms(1000.0),
        success: true,
        measured: true,
        kind: StartKind::Primary,
    });
    p.dispatch(&limited, &mut out);
    assert_eq!(started(&out), vec![(1, 0, StartKind::Primary)]);
    assert!(
        out.contains(&Decision::WakeAt(next)),
        "a slot is left and calls wait: wake up at the next token: {out:?}"
    );
    // Nothing changed since: the next call does no pass and asks for nothing.
    let mut again = vec![];
    p.dispatch(&limited, &mut again);
    assert!(again.is_empty(), "{again:?}");
    // At the wake-up time the pass runs again.
    let mut refilled = view(vec![load(1, 2), load(4, 4)], &calls[1..]);
    refilled.now = next;
    refilled.loads[0][0].tokens = 1;
    p.dispatch(&refilled, &mut again);
    assert_eq!(started(&again), vec![(2, 0, StartKind::Primary)]);
}

#[test]
fn a_token_limited_head_blocks_its_queue_and_wakes_when_its_tokens_refill() {
    let mut s = setup(
        PolicyKind::FifoCheapest,
        Ablations::default(),
        Constants::default(),
    );
    s.providers[0][0].token_limit = true;
    let mut p = Policy::new(s);
    // Two queued calls reserving 800 and 100 tokens.
    let mut big = call(1, 1.0, 1.0);
    big.input_tokens = 700;
    big.output_tokens = 100;
    let mut small = call(2, 2.0, 1.0);
    small.input_tokens = 100;
    let calls = [big, small];
    let full = view(vec![load(2, 2), load(4, 4)], &calls);
    let mut out = vec![];
    for c in &calls {
        p.on_ready(&full, *c, &mut out);
    }
    // Tier 0 frees both slots, but its bucket (60,000 a minute: one token
    // a millisecond) holds 500 tokens now.
    let mut bucket = crate::bucket::TokenBucket::per_minute(60_000.0, 1_000);
    let now = SimTime(100_000_000);
    bucket.take(now, 500);
    let mut tier0 = load(0, 2);
    tier0.token_bucket = Some(bucket);
    let v = view(vec![tier0, load(4, 4)], &calls);
    let mut out = vec![];
    p.dispatch(&v, &mut out);
    assert_eq!(
        started(&out),
        vec![],
        "the head waits, and the call behind it too"
    );
    // 300 tokens short at one a millisecond: 300 ms.
    assert_eq!(out, vec![Decision::WakeAt(SimTime(100_300_000))]);
    // At that time the head starts, and the small call has to wait again.
    let later = SimTime(100_300_000);
    let mut tier0 = load(0, 2);
    tier0.token_bucket = Some(bucket);
    let mut v = view(vec![tier0, load(4, 4)], &calls);
    v.now = later;
    let mut out = vec![];
    p.recheck();
    p.dispatch(&v, &mut out);
    assert_eq!(started(&out), vec![(1, 0, StartKind::Primary)]);
    assert_eq!(out.last(), Some(&Decision::WakeAt(SimTime(100_400_000))));
}

#[test]
fn a_redone_call_goes_to_the_model_that_accepts_it_most() {
    // Both tiers offer `large` and a `small` with a quality curve.
    let with_curve = |routing: bool| {
        let ablations = Ablations {
            enable_model_routing: routing,
            ..Ablations::default()
        };
        let mut s = setup(PolicyKind::FifoCheapest, ablations, Constants::default());
        for t in &mut s.providers[0] {
            t.models = vec![(1.0, 1.0), (0.2, 0.6)];
            t.quality = vec![None, Some((0.5, 10.0))];
        }
        Policy::new(s)
    };
    let mut p = with_curve(false);
    let mut c = call(1, 0.0, 1.0);
    c.difficulty = 0.9;
    let model_of = |p: &mut Policy, c: ReadyCall| {
        let mut out = vec![];
        p.on_ready(&view(vec![load(0, 2), load(0, 4)], &[c]), c, &mut out);
        match out[0] {
            Decision::Start { model, .. } => model,
            _ => panic!("started"),
        }
    };
    assert_eq!(model_of(&mut p, c), 0, "no routing: the default model");
    c.redos = 1;
    assert_eq!(
        model_of(&mut p, c),
        0,
        "a redo: the best model, the default here"
    );
    // Routing sends easy calls to the cheap model, but not their redos.
    let mut p = with_curve(true);
    c.difficulty = 0.1;
    c.redos = 0;
    assert_eq!(model_of(&mut p, c), 1);
    c.redos = 1;
    assert_eq!(model_of(&mut p, c), 0);
}

proptest::proptest! {
    /// The packed queue key orders entries exactly as the (k1, k2, seq)
    /// tuple it packs (reversed, for the max-heap), ties included.
    #[test]
    fn packed_queue_keys_order_as_their_tuples(
        a in (proptest::prelude::any::<u64>(), 0u64..1 << 24, 0u64..1 << 40),
        b in (proptest::prelude::any::<u64>(), 0u64..1 << 24, 0u64..1 << 40),
        same_k1 in proptest::prelude::any::<bool>(),
        same_k2 in proptest::prelude::any::<bool>(),
    ) {
        let b = (if same_k1 { a.0 } else { b.0 }, if same_k2 { a.1 } else { b.1 }, b.2);
        let call = CallKey { slot: 0, generation: 0, node: 0 };
        let (qa, qb) = (Queued::new(a.0, a.1, a.2, call), Queued::new(b.0, b.1, b.2, call));
        proptest::prop_assert_eq!(qa.cmp(&qb), b.cmp(&a));
    }

    /// A hedge deadline's packed key orders deadlines as (at, seq) does,
    /// ties in time included; the attempt index plays no part.
    #[test]
    fn hedge_deadlines_order_as_their_time_and_sequence(
        a in (proptest::prelude::any::<u64>(), proptest::prelude::any::<u64>(), proptest::prelude::any::<u32>()),
        b in (proptest::prelude::any::<u64>(), proptest::prelude::any::<u64>(), proptest::prelude::any::<u32>()),
        same_at in proptest::prelude::any::<bool>(),
    ) {
        let b = (if same_at { a.0 } else { b.0 }, b.1, b.2);
        let timer = |(at, seq, armed): (u64, u64, u32)| HedgeTimer { at: SimTime(at), seq, armed };
        let (ta, tb) = (timer(a), timer(b));
        proptest::prop_assert_eq!(ta.cmp(&tb), (a.0, a.1).cmp(&(b.0, b.1)));
        proptest::prop_assert_eq!(ta == tb, (a.0, a.1) == (b.0, b.1));
    }
}

#[test]
#[should_panic(expected = "queue key out of range")]
fn a_workflow_id_beyond_the_queue_key_is_refused() {
    let call = CallKey {
        slot: 0,
        generation: 0,
        node: 0,
    };
    let _ = Queued::new(0, 1 << 24, 0, call);
}
