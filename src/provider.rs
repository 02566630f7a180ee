//! The tier model, shared by the simulator and the live emulator: token
//! buckets, keyed latency and outcome draws, prices.

pub use crate::bucket::TokenBucket;
use crate::rng::{Keyer, SimRng, Stream, unit};
use crate::scenario::{Enforcer, Model, PrefixCache, RateLimit, Sampler, Tier, TokenLimit};
use crate::units::{Money, SimDuration, SimTime};

/// How an attempt ends, as drawn before it starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    /// A result.
    Success,
    /// An error response after the drawn latency.
    Failure,
    /// Cut off at the tier's timeout.
    Timeout,
    /// 429 Too Many Requests from a provider-enforced rate limit.
    RateLimited,
    /// Cancelled by the scheduler (hedge loser, failed workflow).
    Cancelled,
}

impl Outcome {
    /// Lower-case name for traces and reports.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Timeout => "timeout",
            Outcome::RateLimited => "rate_limited",
            Outcome::Cancelled => "cancelled",
        }
    }
}

/// The keyed draw of one attempt.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttemptDraw {
    /// How long the attempt occupies its slot.
    pub duration: SimDuration,
    /// How it ends (if not cancelled first).
    pub outcome: Outcome,
    /// Time to first token, for node types with a streaming latency model.
    pub ttft: Option<SimDuration>,
}

/// Which limit a 429 came from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Limit {
    /// The request bucket (`rate_limit`).
    #[default]
    Requests,
    /// The tokens-per-minute bucket (`token_limit`).
    Tokens,
}

/// A tier ready for the simulator: the spec plus its bucket state.
#[derive(Clone, Debug)]
pub struct TierModel {
    /// Concurrency slots.
    pub slots: u32,
    /// The rate limit, if any.
    pub bucket: Option<TokenBucket>,
    /// Who enforces the rate limit.
    pub enforcer: Enforcer,
    /// Time a 429 takes to come back.
    pub reject_latency: SimDuration,
    /// The tokens-per-minute limit, if any.
    pub token_bucket: Option<TokenBucket>,
    /// Who enforces the tokens-per-minute limit.
    pub token_enforcer: Enforcer,
    /// Time a 429 of the token limit takes to come back.
    pub token_reject_latency: SimDuration,
    /// Latency multiplier.
    pub latency_scale: f64,
    /// Failure probability per attempt.
    pub failure_prob: f64,
    /// Attempt timeout.
    pub timeout: Option<SimDuration>,
    /// Retries before the node fails.
    pub max_retries: u32,
    /// Price per call, per million input and output tokens.
    pub prices: (f64, f64, f64),
    /// Price per million prompt tokens served from a prefix cache.
    pub price_per_mtok_cached_in: f64,
    /// Price per million prompt tokens written to the prefix cache.
    pub price_per_mtok_cache_write: f64,
    /// The provider's prompt prefix cache, if it keeps one.
    pub prefix_cache: Option<PrefixCache>,
    /// Models (at least one: the default).
    pub models: Vec<Model>,
    /// Each model's price when it does not depend on tokens (no per-token
    /// prices): the same value [`TierModel::price`] computes, once.
    flat_prices: Option<Vec<Money>>,
}

impl TierModel {
    /// Builds the model of a validated tier spec.
    pub fn new(t: &Tier) -> TierModel {
        let (bucket, enforcer, reject) = match &t.rate_limit {
            Some(RateLimit {
                rate_per_s,
                burst,
                enforced_by,
                reject_latency_ms,
            }) => (
                Some(TokenBucket::new(*rate_per_s, *burst as u64)),
                *enforced_by,
                SimDuration::from_ms(*reject_latency_ms),
            ),
            None => (None, Enforcer::Client, SimDuration::ZERO),
        };
        let (token_bucket, token_enforcer, token_reject) = match &t.token_limit {
            Some(TokenLimit {
                tokens_per_min,
                token_burst,
                enforced_by,
                reject_latency_ms,
            }) => (
                Some(TokenBucket::per_minute(*tokens_per_min, *token_burst)),
                *enforced_by,
                SimDuration::from_ms(*reject_latency_ms),
            ),
            None => (None, Enforcer::Client, SimDuration::ZERO),
        };
        let models = if t.models.is_empty() {
            vec![Model {
                name: "default".into(),
                price_multiplier: 1.0,
                latency_scale: 1.0,
                quality: None,
            }]
        } else {
            t.models.clone()
        };
        let prices = (t.price_per_call, t.price_per_mtok_in, t.price_per_mtok_out);
        let cached_in = t.price_per_mtok_cached_in.unwrap_or(t.price_per_mtok_in);
        let cache_write = t.price_per_mtok_cache_write.unwrap_or(t.price_per_mtok_in);
        let token_free = prices.1 == 0.0 && prices.2 == 0.0 && cached_in == 0.0;
        let flat_prices = (token_free && cache_write == 0.0).then(|| {
            models
                .iter()
                .map(|m| price_of(prices, m.price_multiplier, 0, 0))
                .collect()
        });
        TierModel {
            flat_prices,
            slots: t.slots,
            bucket,
            enforcer,
            reject_latency: reject,
            token_bucket,
            token_enforcer,
            token_reject_latency: token_reject,
            latency_scale: t.latency_scale,
            failure_prob: t.failure_prob,
            timeout: t.timeout_ms.map(SimDuration::from_ms),
            max_retries: t.max_retries,
            prices,
            price_per_mtok_cached_in: cached_in,
            price_per_mtok_cache_write: cache_write,
            prefix_cache: t.prefix_cache.clone(),
            models,
        }
    }

    /// Whether the client enforces a request-rate limit here.
    pub fn client_request_limit(&self) -> bool {
        self.bucket.is_some() && self.enforcer == Enforcer::Client
    }

    /// Whether the client enforces a tokens-per-minute limit here.
    pub fn client_token_limit(&self) -> bool {
        self.token_bucket.is_some() && self.token_enforcer == Enforcer::Client
    }

    /// Price of one attempt with `model` and the given token counts.
    pub fn price(&self, model: usize, input_tokens: u32, output_tokens: u32) -> Money {
        match &self.flat_prices {
            Some(flat) => flat[model],
            None => price_of(
                self.prices,
                self.models[model].price_multiplier,
                input_tokens,
                output_tokens,
            ),
        }
    }

    /// [`price`](Self::price) of an attempt that used the prefix cache as
    /// `used` says: its cached prompt tokens at `price_per_mtok_cached_in`,
    /// those it wrote at `price_per_mtok_cache_write` (together at most
    /// all of its prompt tokens), the rest at `price_per_mtok_in`.
    pub fn price_prefix(
        &self,
        model: usize,
        input_tokens: u32,
        used: PrefixUse,
        output_tokens: u32,
    ) -> Money {
        let (call, tin, tout) = self.prices;
        let cached = used.cached.min(input_tokens);
        // Without a premium a write is an ordinary prompt token: priced by
        // the formula that has no write term, bit for bit.
        let written = if self.price_per_mtok_cache_write == tin {
            0
        } else {
            used.written.min(input_tokens - cached)
        };
        if (cached == 0 && written == 0) || self.flat_prices.is_some() {
            return self.price(model, input_tokens, output_tokens);
        }
        let mut dollars = call
            + tin * (input_tokens - cached - written) as f64 / 1e6
            + self.price_per_mtok_cached_in * cached as f64 / 1e6;
        if written > 0 {
            dollars += self.price_per_mtok_cache_write * written as f64 / 1e6;
        }
        dollars += tout * output_tokens as f64 / 1e6;
        Money::from_dollars(dollars * self.models[model].price_multiplier)
    }
}

/// `(per call + per Mtok in x tokens + per Mtok out x tokens) x multiplier`,
/// rounded to the nano-dollar.
fn price_of(
    prices: (f64, f64, f64),
    multiplier: f64,
    input_tokens: u32,
    output_tokens: u32,
) -> Money {
    let (call, tin, tout) = prices;
    let dollars =
        (call + tin * input_tokens as f64 / 1e6 + tout * output_tokens as f64 / 1e6) * multiplier;
    Money::from_dollars(dollars)
}

/// The provider's side of every attempt: the keyed latency and outcome
/// draw, and provider-enforced rate limits (a 429 after the tier's reject
/// latency, with the wait until the next token as Retry-After). One model
/// for the simulator, the in-process transport and the emulator.
#[derive(Clone, Debug)]
pub struct ProviderSide {
    keyer: Keyer,
    /// Provider-enforced request buckets, per (provider, tier).
    buckets: Vec<Vec<Option<TokenBucket>>>,
    /// Provider-enforced tokens-per-minute buckets, per (provider, tier).
    token_buckets: Vec<Vec<Option<TokenBucket>>>,
    /// Whether any tier has one (most scenarios: none, and the hot path
    /// skips the lookup).
    any_bucket: bool,
    /// Prefix cache entries: (provider, tier) -> its first entry, then one
    /// per (model, node type); `None` where the tier keeps no cache.
    prefix_first: Vec<Vec<Option<usize>>>,
    prefix: Vec<PrefixEntry>,
    /// Each node type's shared prompt tokens, where some call can be
    /// served from a cache (see [`Scenario::has_prefix_caching`](crate::scenario::Scenario::has_prefix_caching)); empty
    /// where none can, and the hot path skips the lookup.
    shared_tokens: Vec<u32>,
}

/// One shared prompt in one tier's prefix cache.
#[derive(Clone, Copy, Debug, Default)]
struct PrefixEntry {
    /// Whether a prompt was ever written here.
    written: bool,
    /// From when it is served: the end of the first prefill that wrote it.
    warm_at: SimTime,
    /// Its last use (a hit, or a prefill that wrote it); it is gone
    /// `ttl` after this.
    last_use: SimTime,
}

impl PrefixEntry {
    /// Whether an attempt sent at `now` is served from it (and if so,
    /// the use keeps it alive).
    fn hit(&mut self, now: SimTime, ttl: SimDuration) -> bool {
        let hit = self.written && self.warm_at <= now && now <= self.last_use + ttl;
        if hit {
            self.last_use = self.last_use.max(now);
        }
        hit
    }

    /// An attempt sent at `now` that missed processes the prompt by
    /// `done`: from then on it is cached (unless an earlier prefill
    /// already cached it, or is about to).
    fn write(&mut self, now: SimTime, done: SimTime, ttl: SimDuration) {
        if self.written && now <= self.last_use + ttl {
            self.warm_at = self.warm_at.min(done);
            self.last_use = self.last_use.max(done);
        } else {
            *self = PrefixEntry {
                written: true,
                warm_at: done,
                last_use: done,
            };
        }
    }
}

/// A provider-enforced bucket as `x-ratelimit-*` headers report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BucketReport {
    /// Capacity (`x-ratelimit-limit-requests` or `-tokens`).
    pub limit: u64,
    /// Units available now (`x-ratelimit-remaining-requests` or `-tokens`).
    pub remaining: u64,
    /// Until the bucket is full again (`x-ratelimit-reset-requests` or
    /// `-tokens`), as OpenAI reports it.
    pub reset: SimDuration,
}

/// The provider's answer to one attempt.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProviderReply {
    /// The draw (a 429's duration is the reject latency).
    pub draw: AttemptDraw,
    /// For a 429: the wait until every limit admits the request again.
    pub retry_after: SimDuration,
    /// For a 429: the limit that refused it (the one with the longer wait).
    pub limited_by: Limit,
    /// Prompt tokens served from the tier's prefix cache; written only for
    /// attempts on a tier with a cache, in scenarios where some call can
    /// be served from one (see
    /// [`Scenario::has_prefix_caching`](crate::scenario::Scenario::has_prefix_caching)).
    pub cached_input_tokens: u32,
    /// Prompt tokens it wrote to that cache (a miss of a shared prompt the
    /// cache can serve); written like `cached_input_tokens`.
    pub cache_write_tokens: u32,
}

/// How one attempt used its tier's prefix cache, in prompt tokens.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrefixUse {
    /// Served from the cache.
    pub cached: u32,
    /// Written to it.
    pub written: u32,
}

impl ProviderReply {
    /// A placeholder to draw into (an instant success).
    pub const BLANK: ProviderReply = ProviderReply {
        draw: AttemptDraw {
            duration: SimDuration::ZERO,
            outcome: Outcome::Success,
            ttft: None,
        },
        retry_after: SimDuration::ZERO,
        limited_by: Limit::Requests,
        cached_input_tokens: 0,
        cache_write_tokens: 0,
    };
}

impl ProviderSide {
    /// The provider side of a validated scenario.
    pub fn new(s: &crate::scenario::Scenario) -> ProviderSide {
        let per_tier = |f: &dyn Fn(&Tier) -> Option<TokenBucket>| -> Vec<Vec<Option<TokenBucket>>> {
            s.providers
                .values()
                .map(|p| p.tiers.iter().map(f).collect())
                .collect()
        };
        let buckets = per_tier(&|t| {
            t.rate_limit
                .as_ref()
                .filter(|r| r.enforced_by == Enforcer::Provider)
                .map(|r| TokenBucket::new(r.rate_per_s, r.burst as u64))
        });
        let token_buckets = per_tier(&|t| {
            t.token_limit
                .as_ref()
                .filter(|r| r.enforced_by == Enforcer::Provider)
                .map(|r| TokenBucket::per_minute(r.tokens_per_min, r.token_burst))
        });
        let node_types = s.node_types.len();
        let mut prefix_len = 0;
        let prefix_first = s
            .providers
            .values()
            .map(|p| {
                p.tiers
                    .iter()
                    .map(|t| {
                        t.prefix_cache.as_ref()?;
                        let first = prefix_len;
                        prefix_len += t.models.len().max(1) * node_types;
                        Some(first)
                    })
                    .collect()
            })
            .collect();
        ProviderSide {
            keyer: attempt_keyer(s.seed),
            prefix_first,
            prefix: vec![PrefixEntry::default(); prefix_len],
            shared_tokens: if s.has_prefix_caching() {
                s.node_types
                    .values()
                    .map(|n| n.shared_prompt_tokens)
                    .collect()
            } else {
                vec![]
            },
            any_bucket: buckets
                .iter()
                .chain(&token_buckets)
                .flatten()
                .any(Option::is_some),
            buckets,
            token_buckets,
        }
    }

    /// The attempt `ids` arriving at `now`: a 429 when a provider-enforced
    /// bucket cannot admit it (with the wait until every one can), else
    /// the keyed draw. A refused attempt takes nothing from any bucket.
    pub fn attempt(
        &mut self,
        now: SimTime,
        ids: AttemptIds,
        tier: &TierModel,
        model: usize,
        node_type: u16,
        spec: &DrawSpec<'_>,
    ) -> ProviderReply {
        let mut reply = ProviderReply::BLANK;
        self.attempt_into(&mut reply, now, ids, tier, model, node_type, spec);
        reply
    }

    /// [`attempt`](Self::attempt), written into `out`: the simulator
    /// draws straight into the slot it keeps the reply in, where a reply
    /// returned and copied over was reloaded wider than it had just been
    /// written (a store-forwarding stall on every attempt). Always inlined:
    /// both copies of the engine call it once an attempt.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub fn attempt_into(
        &mut self,
        out: &mut ProviderReply,
        now: SimTime,
        ids: AttemptIds,
        tier: &TierModel,
        model: usize,
        node_type: u16,
        spec: &DrawSpec<'_>,
    ) {
        let keyer = self.keyer;
        // Two copies: where no call can be served from a cache (most
        // scenarios), the draw's path has no cache check at all.
        if self.shared_tokens.is_empty() {
            self.attempt_keyed_into::<false>(out, &keyer, now, ids, tier, model, node_type, spec);
        } else {
            self.attempt_keyed_into::<true>(out, &keyer, now, ids, tier, model, node_type, spec);
        }
    }

    /// [`attempt`](Self::attempt) with draws from another keyer (the
    /// emulator's own stream, for requests without an identity).
    #[allow(clippy::too_many_arguments)]
    pub fn attempt_keyed(
        &mut self,
        keyer: &Keyer,
        now: SimTime,
        ids: AttemptIds,
        tier: &TierModel,
        model: usize,
        node_type: u16,
        spec: &DrawSpec<'_>,
    ) -> ProviderReply {
        let mut reply = ProviderReply::BLANK;
        self.attempt_keyed_into::<true>(&mut reply, keyer, now, ids, tier, model, node_type, spec);
        reply
    }

    /// [`attempt_keyed`](Self::attempt_keyed), written into `out`; what
    /// the other three come to. `CACHING`: whether some call of the
    /// scenario can be served from a prefix cache.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn attempt_keyed_into<const CACHING: bool>(
        &mut self,
        out: &mut ProviderReply,
        keyer: &Keyer,
        now: SimTime,
        ids: AttemptIds,
        tier: &TierModel,
        model: usize,
        node_type: u16,
        spec: &DrawSpec<'_>,
    ) {
        if self.any_bucket {
            let (p, t) = (ids.provider as usize, ids.tier as usize);
            let cost = spec.reserved_tokens();
            let request_wait =
                self.buckets[p][t].map_or(SimDuration::ZERO, |b| b.ready_at(now, 1) - now);
            let token_wait =
                self.token_buckets[p][t].map_or(SimDuration::ZERO, |b| b.ready_at(now, cost) - now);
            if request_wait > SimDuration::ZERO || token_wait > SimDuration::ZERO {
                let (limited_by, duration) = if token_wait > request_wait {
                    (Limit::Tokens, tier.token_reject_latency)
                } else {
                    (Limit::Requests, tier.reject_latency)
                };
                *out = ProviderReply {
                    draw: AttemptDraw {
                        duration,
                        outcome: Outcome::RateLimited,
                        ttft: None,
                    },
                    retry_after: request_wait.max(token_wait),
                    limited_by,
                    cached_input_tokens: 0,
                    cache_write_tokens: 0,
                };
                return;
            }
            if let Some(b) = &mut self.buckets[p][t] {
                b.take(now, 1);
            }
            if let Some(b) = &mut self.token_buckets[p][t] {
                b.take(now, cost);
            }
        }
        out.retry_after = SimDuration::ZERO;
        out.limited_by = Limit::Requests;
        if CACHING && tier.prefix_cache.is_some() {
            // Written for every attempt on such a tier: a reply slot drawn
            // into again would keep an earlier attempt's count.
            out.cached_input_tokens = 0;
            out.cache_write_tokens = 0;
            // Empty where no node type shares a prompt (the emulator's
            // attempts take this copy whatever the scenario).
            let shared = self
                .shared_tokens
                .get(node_type as usize)
                .copied()
                .unwrap_or(0);
            let shared = shared.min(spec.input_tokens);
            if shared > 0 {
                self.prefix_cached_draw(out, keyer, now, ids, tier, model, node_type, shared, spec);
                return;
            }
        }
        draw_attempt_into(&mut out.draw, keyer, ids.words(), tier, model, spec);
    }

    /// The draw of an attempt that shares a prompt prefix: served from the
    /// tier's prefix cache when warm (its prefill shortened), else writing
    /// it there. Out of line: most scenarios share no prefix.
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    fn prefix_cached_draw(
        &mut self,
        out: &mut ProviderReply,
        keyer: &Keyer,
        now: SimTime,
        ids: AttemptIds,
        tier: &TierModel,
        model: usize,
        node_type: u16,
        shared: u32,
        spec: &DrawSpec<'_>,
    ) {
        if let Some(cache) = &tier.prefix_cache
            && let Some(first) = self.prefix_first[ids.provider as usize][ids.tier as usize]
        {
            let servable = cache.servable(shared);
            let ttl = SimDuration::from_ms(cache.ttl_ms);
            let types = self.shared_tokens.len();
            let entry = &mut self.prefix[first + model * types + node_type as usize];
            if servable > 0 && entry.hit(now, ttl) {
                // The cached prefix is not prefilled again.
                let uncached = DrawSpec {
                    input_tokens: spec.input_tokens - servable,
                    ..*spec
                };
                draw_attempt_into(&mut out.draw, keyer, ids.words(), tier, model, &uncached);
                out.cached_input_tokens = servable;
            } else {
                draw_attempt_into(&mut out.draw, keyer, ids.words(), tier, model, spec);
                // Prefilled by the first token (a timeout may cut it short).
                let d = &out.draw;
                let done = now + d.ttft.map_or(d.duration, |t| t.min(d.duration));
                if servable > 0 {
                    entry.write(now, done, ttl);
                    out.cache_write_tokens = servable;
                }
            }
            return;
        }
        draw_attempt_into(&mut out.draw, keyer, ids.words(), tier, model, spec);
    }

    /// The provider-enforced request bucket of (provider, tier) at `now`.
    pub fn bucket(&self, provider: u16, tier: u16, now: SimTime) -> Option<BucketReport> {
        report(
            self.buckets[provider as usize][tier as usize].as_ref()?,
            now,
        )
    }

    /// The provider-enforced tokens-per-minute bucket of (provider, tier) at `now`.
    pub fn token_bucket(&self, provider: u16, tier: u16, now: SimTime) -> Option<BucketReport> {
        report(
            self.token_buckets[provider as usize][tier as usize].as_ref()?,
            now,
        )
    }
}

fn report(b: &TokenBucket, now: SimTime) -> Option<BucketReport> {
    Some(BucketReport {
        limit: b.capacity(),
        remaining: b.available(now),
        reset: b.ready_at(now, b.capacity()) - now,
    })
}

/// What an attempt's draw depends on besides its key.
#[derive(Clone, Copy, Debug)]
pub struct DrawSpec<'a> {
    /// The node type's base latency sampler.
    pub sampler: &'a Sampler,
    /// The node type's own tail `(prob, mult)`, if any.
    pub tail: Option<(f64, f64)>,
    /// The global heavy tail `(prob, mult)`.
    pub heavy_tail: (f64, f64),
    /// Prompt tokens.
    pub input_tokens: u32,
    /// Output tokens (`max_tokens`; shift the lognormal's mu).
    pub output_tokens: u32,
}

impl DrawSpec<'_> {
    /// What a tokens-per-minute limit reserves for the attempt: its prompt
    /// tokens plus its `max_tokens`.
    pub fn reserved_tokens(&self) -> u64 {
        self.input_tokens as u64 + self.output_tokens as u64
    }
}

/// Draws one latency in ms from `rng`: base x node tail x heavy tail. The
/// uniforms for both tails are always drawn (32 bits each, from one 64-bit
/// output), so the stream stays aligned whatever the probabilities.
#[inline]
pub fn draw_latency_ms(rng: &mut SimRng, spec: &DrawSpec<'_>) -> f64 {
    draw_latency_split(rng, spec).0
}

/// [`draw_latency_ms`], and the time to first token of a streaming model
/// (scaled by the same tails: a slow attempt is slow from its start).
#[inline]
pub fn draw_latency_split(rng: &mut SimRng, spec: &DrawSpec<'_>) -> (f64, Option<f64>) {
    use rand::Rng;
    let (mut ms, ttft) = spec
        .sampler
        .sample_split(rng, spec.input_tokens, spec.output_tokens);
    let before = ms;
    let bits = rng.next_u64();
    let u_tail = (bits >> 32) as f64 * (1.0 / 4_294_967_296.0);
    let u_heavy = (bits & 0xffff_ffff) as f64 * (1.0 / 4_294_967_296.0);
    if let Some((p, m)) = spec.tail
        && u_tail < p
    {
        ms *= m;
    }
    if u_heavy < spec.heavy_tail.0 {
        ms *= spec.heavy_tail.1;
    }
    (ms, ttft.map(|t| t * ms / before.max(f64::MIN_POSITIVE)))
}

/// The keyed draw of attempt `attempt` of node `node` of workflow
/// `workflow` on tier `tier` of provider `provider`: the same key always
/// yields the same latency and outcome, whatever the policy did before.
/// `keyer` is [`attempt_keyer`] of the run's seed.
pub fn draw_attempt(
    keyer: &Keyer,
    ids: AttemptIds,
    tier: &TierModel,
    model: usize,
    spec: &DrawSpec<'_>,
) -> AttemptDraw {
    let mut d = ProviderReply::BLANK.draw;
    draw_attempt_into(&mut d, keyer, ids.words(), tier, model, spec);
    d
}

/// [`draw_attempt`] of the ids packed as [`AttemptIds::words`], written
/// into `out` field by field (see [`ProviderSide::attempt_into`]). The
/// words come in registers: read from the ids in memory, the provider and
/// tier (two 2-byte stores) were loaded as one 4-byte word, another
/// store-forwarding stall.
#[inline(never)]
fn draw_attempt_into(
    out: &mut AttemptDraw,
    keyer: &Keyer,
    (a, b): (u64, u64),
    tier: &TierModel,
    model: usize,
    spec: &DrawSpec<'_>,
) {
    let mut rng = keyer.rng(a, b);
    let scale = tier.latency_scale * tier.models[model].latency_scale;
    // When no tail can fire and no failure can be drawn, nothing after the
    // base draw is read from this attempt's own stream: the uniforms are not
    // drawn (the M/M/c model spent a tenth of an attempt's draw on them).
    // The time to first token goes through the same expression as in
    // `draw_latency_split`, so results are bit for bit the same.
    let quiet = tier.failure_prob <= 0.0
        && spec.tail.is_none_or(|(p, _)| p <= 0.0)
        && spec.heavy_tail.0 <= 0.0;
    let (ms, ttft_ms) = if quiet {
        let (ms, ttft) = spec
            .sampler
            .sample_split(&mut rng, spec.input_tokens, spec.output_tokens);
        (ms, ttft.map(|t| t * ms / ms.max(f64::MIN_POSITIVE)))
    } else {
        draw_latency_split(&mut rng, spec)
    };
    let ms = ms * scale;
    let ttft = ttft_ms.map(|t| SimDuration::from_ms(t * scale));
    let failed = !quiet && unit(&mut rng) < tier.failure_prob;
    let latency = SimDuration::from_ms(ms);
    *out = match tier.timeout {
        Some(limit) if latency > limit => AttemptDraw {
            duration: limit,
            outcome: Outcome::Timeout,
            ttft,
        },
        _ if failed => AttemptDraw {
            duration: latency,
            outcome: Outcome::Failure,
            ttft,
        },
        _ => AttemptDraw {
            duration: latency,
            outcome: Outcome::Success,
            ttft,
        },
    };
}

impl AttemptIds {
    /// The ids packed injectively into two words (workflows and nodes fit
    /// in 32 bits, providers and tiers in 16).
    #[inline]
    pub fn words(&self) -> (u64, u64) {
        (
            (self.workflow << 32) | self.node as u64,
            ((self.provider as u64) << 48) | ((self.tier as u64) << 32) | self.attempt as u64,
        )
    }
}

/// The keyer of attempt draws under `seed` (see [`draw_attempt`]).
pub fn attempt_keyer(seed: u64) -> Keyer {
    Keyer::new(seed, Stream::Attempt)
}

/// The identity an attempt's randomness is keyed by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttemptIds {
    /// Workflow id (0-based arrival order).
    pub workflow: u64,
    /// Node index within the workflow.
    pub node: u32,
    /// Provider index.
    pub provider: u16,
    /// Tier index.
    pub tier: u16,
    /// Attempt number of this node (0 first; retries and hedges count up).
    pub attempt: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Dist;

    #[test]
    fn same_key_same_draw_and_tiers_differ() {
        let s = Dist::Lognormal {
            mu: 6.0,
            sigma: 0.8,
            mu_per_output_token: 0.0,
        }
        .sampler();
        let spec = DrawSpec {
            sampler: &s,
            tail: None,
            heavy_tail: (0.0, 1.0),
            input_tokens: 0,
            output_tokens: 0,
        };
        let tier = TierModel::new(&Tier {
            slots: 1,
            rate_limit: None,
            token_limit: None,
            latency_scale: 1.0,
            failure_prob: 0.0,
            timeout_ms: None,
            max_retries: 0,
            price_per_call: 0.01,
            price_per_mtok_in: 1.0,
            price_per_mtok_out: 2.0,
            price_per_mtok_cached_in: None,
            price_per_mtok_cache_write: None,
            prefix_cache: None,
            models: vec![],
        });
        let ids = AttemptIds {
            workflow: 3,
            node: 7,
            provider: 0,
            tier: 0,
            attempt: 0,
        };
        let a = draw_attempt(&attempt_keyer(9), ids, &tier, 0, &spec);
        assert_eq!(a, draw_attempt(&attempt_keyer(9), ids, &tier, 0, &spec));
        assert_ne!(
            a,
            draw_attempt(
                &attempt_keyer(9),
                AttemptIds { attempt: 1, ..ids },
                &tier,
                0,
                &spec
            )
        );
        assert_ne!(
            a,
            draw_attempt(
                &attempt_keyer(9),
                AttemptIds { tier: 1, ..ids },
                &tier,
                0,
                &spec
            )
        );
        // 0.01 + 1000 * 1/1e6 + 500 * 2/1e6 = 0.012
        assert_eq!(tier.price(0, 1000, 500), Money::from_dollars(0.012));
    }

    /// The draw as made before quiet draws skipped the tail and failure
    /// uniforms: every uniform drawn, whatever the probabilities.
    fn draw_with_every_uniform(
        keyer: &Keyer,
        ids: AttemptIds,
        tier: &TierModel,
        spec: &DrawSpec<'_>,
    ) -> AttemptDraw {
        let (a, b) = ids.words();
        let mut rng = keyer.rng(a, b);
        let (ms, ttft_ms) = draw_latency_split(&mut rng, spec);
        let scale = tier.latency_scale * tier.models[0].latency_scale;
        let ttft = ttft_ms.map(|t| SimDuration::from_ms(t * scale));
        let failed = unit(&mut rng) < tier.failure_prob;
        let latency = SimDuration::from_ms(ms * scale);
        let (duration, outcome) = match tier.timeout {
            Some(limit) if latency > limit => (limit, Outcome::Timeout),
            _ if failed => (latency, Outcome::Failure),
            _ => (latency, Outcome::Success),
        };
        AttemptDraw {
            duration,
            outcome,
            ttft,
        }
    }

    proptest::proptest! {
        /// Skipping the uniforms nobody reads changes no draw: with tails
        /// and failures that cannot happen, and with ones that can.
        #[test]
        fn quiet_draws_are_the_draws_with_every_uniform(
            streaming in proptest::bool::ANY,
            mu in 3.0f64..8.0,
            tokens in 1u32..2000,
            tail_prob in proptest::sample::select(vec![0.0, 0.3]),
            heavy_prob in proptest::sample::select(vec![0.0, 0.2]),
            failure_prob in proptest::sample::select(vec![0.0, 0.4]),
            timeout_ms in proptest::option::of(100.0f64..5000.0),
            scale in 0.2f64..3.0,
            workflow in 0u64..1000,
            attempt in 0u32..4,
        ) {
            let dist = if streaming {
                Dist::Streaming {
                    ttft_mu: mu,
                    ttft_sigma: 0.5,
                    ttft_ms_per_input_token: 0.01,
                    tpot_mu: mu - 3.0,
                    tpot_sigma: 0.3,
                }
            } else {
                Dist::Lognormal { mu, sigma: 0.7, mu_per_output_token: 0.0005 }
            };
            let sampler = dist.sampler();
            let spec = DrawSpec {
                sampler: &sampler,
                tail: (tail_prob > 0.0).then_some((tail_prob, 4.0)),
                heavy_tail: (heavy_prob, 50.0),
                input_tokens: 300,
                output_tokens: tokens,
            };
            let tier = TierModel::new(&Tier {
                slots: 1,
                rate_limit: None,
                token_limit: None,
                latency_scale: scale,
                failure_prob,
                timeout_ms,
                max_retries: 0,
                price_per_call: 0.0,
                price_per_mtok_in: 0.0,
                price_per_mtok_out: 0.0,
                price_per_mtok_cached_in: None,
                price_per_mtok_cache_write: None,
                prefix_cache: None,
                models: vec![],
            });
            let ids = AttemptIds { workflow, node: 2, provider: 0, tier: 0, attempt };
            let keyer = attempt_keyer(5);
            proptest::prop_assert_eq!(
                draw_attempt(&keyer, ids, &tier, 0, &spec),
                draw_with_every_uniform(&keyer, ids, &tier, &spec)
            );
        }
    }

    #[test]
    fn timeout_cuts_attempts_at_the_limit() {
        let s = Dist::Constant { ms: 500.0 }.sampler();
        let spec = DrawSpec {
            sampler: &s,
            tail: None,
            heavy_tail: (1.0, 10.0),
            input_tokens: 0,
            output_tokens: 0,
        };
        let mut t = Tier {
            slots: 1,
            rate_limit: None,
            token_limit: None,
            latency_scale: 1.0,
            failure_prob: 0.0,
            timeout_ms: Some(1000.0),
            max_retries: 0,
            price_per_call: 0.0,
            price_per_mtok_in: 0.0,
            price_per_mtok_out: 0.0,
            price_per_mtok_cached_in: None,
            price_per_mtok_cache_write: None,
            prefix_cache: None,
            models: vec![],
        };
        let ids = AttemptIds {
            workflow: 0,
            node: 0,
            provider: 0,
            tier: 0,
            attempt: 0,
        };
        let d = draw_attempt(&attempt_keyer(1), ids, &TierModel::new(&t), 0, &spec);
        assert_eq!(
            d,
            AttemptDraw {
                duration: SimDuration::from_ms(1000.0),
                outcome: Outcome::Timeout,
                ttft: None,
            }
        );
        t.timeout_ms = None;
        let d = draw_attempt(&attempt_keyer(1), ids, &TierModel::new(&t), 0, &spec);
        assert_eq!(
            d,
            AttemptDraw {
                duration: SimDuration::from_ms(5000.0),
                outcome: Outcome::Success,
                ttft: None,
            }
        );
    }

    #[test]
    fn a_prefix_cache_serves_what_one_prefill_wrote_until_it_goes_unused() {
        // Two node types sharing 100 of 120 prompt tokens; one tier, two
        // models, a 1 s cache; every attempt takes 100 ms (no first token:
        // the prefill is done when the attempt ends).
        let mut s = crate::scenario::Scenario::mmc(1, 1.0, 1.0, 1, 1);
        let call = s.node_types.get_mut("Call").unwrap();
        (call.input_tokens, call.shared_prompt_tokens) = (120, 100);
        let call = call.clone();
        s.node_types.insert("Other".into(), call);
        let tier = &mut s.providers.values_mut().next().unwrap().tiers[0];
        tier.prefix_cache = Some(PrefixCache {
            ttl_ms: 1000.0,
            block_tokens: 1,
            min_tokens: 0,
        });
        tier.models = ["a", "b"]
            .map(|name| Model {
                name: name.into(),
                price_multiplier: 1.0,
                latency_scale: 1.0,
                quality: None,
            })
            .to_vec();
        let model = TierModel::new(tier);
        let mut side = ProviderSide::new(&s);
        let sampler = Dist::Constant { ms: 100.0 }.sampler();
        let mut n = 0;
        let mut send = |ms: f64, model_ix: usize, node_type: u16| {
            let spec = DrawSpec {
                sampler: &sampler,
                tail: None,
                heavy_tail: (0.0, 1.0),
                input_tokens: 120,
                output_tokens: 0,
            };
            n += 1;
            let ids = AttemptIds {
                workflow: n,
                node: 0,
                provider: 0,
                tier: 0,
                attempt: 0,
            };
            let now = SimTime::ZERO + SimDuration::from_ms(ms);
            let r = side.attempt(now, ids, &model, model_ix, node_type, &spec);
            // Each attempt is served the shared prompt or writes it.
            assert_eq!(
                r.cached_input_tokens + r.cache_write_tokens,
                100,
                "at {ms} ms"
            );
            r.cached_input_tokens
        };
        assert_eq!(send(0.0, 0, 0), 0, "nothing written yet");
        assert_eq!(send(50.0, 0, 0), 0, "the first prefill ends at 100 ms");
        assert_eq!(send(100.0, 0, 0), 100, "written");
        assert_eq!(send(100.0, 1, 0), 0, "another model's cache");
        assert_eq!(send(100.0, 0, 1), 0, "another type's prompt");
        // Last used by the prefill that ended at 150 ms: alive to 1,150 ms.
        assert_eq!(send(1150.0, 0, 0), 100, "used within the ttl");
        assert_eq!(send(2150.0, 0, 0), 100, "kept alive by that use");
        assert_eq!(send(3151.0, 0, 0), 0, "unused for over a second: gone");
        assert_eq!(send(3200.0, 0, 0), 0, "written again by 3,251 ms");
        assert_eq!(send(3251.0, 0, 0), 100);
        // The other model's entry, written at 200 ms, is long gone too.
        assert_eq!(send(3251.0, 1, 0), 0);
    }

    #[test]
    fn a_cache_on_a_tier_without_shared_prompts_serves_nothing_on_every_path() {
        // The emulator's own keyer takes the caching copy of the attempt
        // whatever the scenario; no node type shares a prompt here.
        let mut s = crate::scenario::Scenario::mmc(1, 1.0, 1.0, 1, 1);
        s.node_types.get_mut("Call").unwrap().input_tokens = 500;
        let tier = &mut s.providers.values_mut().next().unwrap().tiers[0];
        tier.prefix_cache = Some(PrefixCache {
            ttl_ms: 1000.0,
            block_tokens: 1,
            min_tokens: 0,
        });
        let model = TierModel::new(tier);
        assert!(!s.has_prefix_caching());
        let mut side = ProviderSide::new(&s);
        let sampler = Dist::Constant { ms: 10.0 }.sampler();
        let spec = DrawSpec {
            sampler: &sampler,
            tail: None,
            heavy_tail: (0.0, 1.0),
            input_tokens: 500,
            output_tokens: 0,
        };
        let own = Keyer::new(7, Stream::Emulator);
        for w in 0..3 {
            let ids = AttemptIds {
                workflow: w,
                node: 0,
                provider: 0,
                tier: 0,
                attempt: 0,
            };
            let now = SimTime::ZERO + SimDuration::from_ms(100.0 * w as f64);
            let keyed = side.attempt_keyed(&own, now, ids, &model, 0, 0, &spec);
            let plain = side.attempt(now, ids, &model, 0, 0, &spec);
            assert_eq!(
                (keyed.cached_input_tokens, plain.cached_input_tokens),
                (0, 0)
            );
        }
    }

    /// The one tier of a one-server M/M/1 scenario.
    fn mmc_tier() -> Tier {
        crate::scenario::Scenario::mmc(1, 1.0, 1.0, 1, 1)
            .providers
            .into_values()
            .next()
            .unwrap()
            .tiers
            .remove(0)
    }

    #[test]
    fn cached_prompt_tokens_are_priced_at_the_cached_rate() {
        let mut t = mmc_tier();
        (t.price_per_call, t.price_per_mtok_in, t.price_per_mtok_out) = (0.01, 2.0, 8.0);
        let m = TierModel::new(&t);
        // Without a cached price, cached tokens cost what others do.
        assert_eq!(
            m.price_prefix(
                0,
                1000,
                PrefixUse {
                    cached: 600,
                    written: 0
                },
                10
            ),
            m.price(0, 1000, 10)
        );
        assert_eq!(
            m.price(0, 1000, 10),
            Money::from_dollars(0.01 + 0.002 + 0.000_08)
        );
        t.price_per_mtok_cached_in = Some(0.5);
        let m = TierModel::new(&t);
        assert_eq!(
            m.price_prefix(
                0,
                1000,
                PrefixUse {
                    cached: 600,
                    written: 0
                },
                10
            ),
            Money::from_dollars(0.01 + 400.0 * 2e-6 + 600.0 * 0.5e-6 + 0.000_08)
        );
        // At most every prompt token is cached.
        assert_eq!(
            m.price_prefix(
                0,
                1000,
                PrefixUse {
                    cached: 5000,
                    written: 0
                },
                10
            ),
            m.price_prefix(
                0,
                1000,
                PrefixUse {
                    cached: 1000,
                    written: 0
                },
                10
            )
        );
        assert_eq!(
            m.price_prefix(
                0,
                1000,
                PrefixUse {
                    cached: 0,
                    written: 0
                },
                10
            ),
            m.price(0, 1000, 10)
        );
        // A tier priced per call only stays flat.
        let mut flat = t.clone();
        flat.price_per_mtok_cached_in = Some(0.0);
        (flat.price_per_mtok_in, flat.price_per_mtok_out) = (0.0, 0.0);
        assert_eq!(
            TierModel::new(&flat).price_prefix(
                0,
                1000,
                PrefixUse {
                    cached: 600,
                    written: 0
                },
                10
            ),
            Money::from_dollars(0.01)
        );

        // Writes cost what other prompt tokens do until the tier charges
        // a premium for them.
        let used = |cached, written| PrefixUse { cached, written };
        assert_eq!(
            m.price_prefix(0, 1000, used(0, 600), 10),
            m.price(0, 1000, 10)
        );
        assert_eq!(
            m.price_prefix(0, 1000, used(600, 0), 10),
            m.price_prefix(
                0,
                1000,
                PrefixUse {
                    cached: 600,
                    written: 0
                },
                10
            )
        );
        t.price_per_mtok_cache_write = Some(2.5);
        let m = TierModel::new(&t);
        assert_eq!(
            m.price_prefix(0, 1000, used(0, 600), 10),
            Money::from_dollars(0.01 + 400.0 * 2e-6 + 600.0 * 2.5e-6 + 0.000_08)
        );
        // Reads, writes and the rest together: at most every prompt token.
        assert_eq!(
            m.price_prefix(0, 1000, used(300, 600), 10),
            Money::from_dollars(0.01 + 100.0 * 2e-6 + 300.0 * 0.5e-6 + 600.0 * 2.5e-6 + 0.000_08)
        );
        assert_eq!(
            m.price_prefix(0, 1000, used(300, 5000), 10),
            m.price_prefix(0, 1000, used(300, 700), 10)
        );
        // A write premium on a per-call tier makes its price depend on tokens.
        flat.price_per_mtok_cache_write = Some(1.0);
        assert_eq!(
            TierModel::new(&flat).price_prefix(0, 1000, used(0, 600), 10),
            Money::from_dollars(0.01 + 600.0 * 1e-6)
        );
    }

    proptest::proptest! {
        /// Without a write premium a write is priced as any prompt token,
        /// bit for bit as before writes were counted.
        #[test]
        fn writes_without_a_premium_change_no_price(
            input in 0u32..200_000, cached in 0u32..200_000, written in 0u32..200_000,
            output in 0u32..50_000, tin in 0.0f64..100.0, tcached in 0.0f64..100.0,
        ) {
            let mut t = mmc_tier();
            (t.price_per_call, t.price_per_mtok_in, t.price_per_mtok_out) = (0.001, tin, 3.0);
            t.price_per_mtok_cached_in = Some(tcached);
            let m = TierModel::new(&t);
            proptest::prop_assert_eq!(
                m.price_prefix(0, input, PrefixUse { cached, written }, output),
                m.price_prefix(0, input, PrefixUse { cached, written: 0 }, output)
            );
        }
    }

    #[test]
    fn a_cache_serves_whole_blocks_of_at_least_its_minimum() {
        let c = |block_tokens, min_tokens| PrefixCache {
            ttl_ms: 1.0,
            block_tokens,
            min_tokens,
        };
        assert_eq!(c(1, 0).servable(1500), 1500);
        assert_eq!(c(128, 0).servable(1500), 1408);
        assert_eq!(c(128, 1024).servable(1500), 1408);
        assert_eq!(c(128, 1024).servable(1100), 1024);
        assert_eq!(c(128, 1024).servable(1000), 0, "896 is under its minimum");
        assert_eq!(c(16, 0).servable(15), 0);
    }
}
