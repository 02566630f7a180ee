//! `endpoints.json`: where each (provider, tier) of a scenario is served.
//!
//! ```json
//! {"providers": {
//!   "llm_provider": [
//!     {"base_url": "http://127.0.0.1:8080/v1", "model": "small-model",
//!      "models": {"small": "tiny-model"}, "api_key_env": "MY_KEY",
//!      "headers": {"x-team": "research"}, "slots": 4,
//!      "rate_limit": {"rate_per_s": 5, "burst": 20}},
//!     {"base_url": "http://127.0.0.1:8081/v1", "model": "big-model"}],
//!   "embed_provider": [ ... ]}}
//! ```
//!
//! `model` is the name sent for the tier's default model; `models` maps the
//! scenario's other model names (model routing) to endpoint names (a
//! missing one is sent under its scenario name). `api_key_env` names an
//! environment variable: the key itself is never written anywhere. It goes
//! as `Authorization: Bearer <key>`, or as it is in `api_key_header` (Azure
//! OpenAI's `api-key`). A query in `base_url` (`?api-version=...`) ends
//! every request's URL.
//! `slots`, `rate_limit` and `token_limit` override the scenario's tier.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::scenario::{RateLimit, Scenario};

/// The file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointsFile {
    /// Provider name -> one endpoint per tier, in tier order.
    pub providers: BTreeMap<String, Vec<TierEndpoint>>,
}

/// One tier's endpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierEndpoint {
    /// `http://host:port/v1` (requests go to `{base_url}/chat/completions`
    /// and `{base_url}/embeddings`).
    pub base_url: String,
    /// Model name for the tier's default model.
    pub model: String,
    /// Scenario model name -> endpoint model name, for the others.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub models: BTreeMap<String, String>,
    /// Name of the environment variable holding the API key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// The request header that carries the key: `authorization` (the
    /// default) as `Bearer <key>`, any other (Azure OpenAI's `api-key`)
    /// the key as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_header: Option<String>,
    /// Extra request headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// The chat request field that carries the call's output size.
    #[serde(default, skip_serializing_if = "MaxTokensParam::is_default")]
    pub max_tokens_param: MaxTokensParam,
    /// Fields added to every request body (as the OpenAI clients'
    /// `extra_body`): `{"ignore_eos": true}` makes vLLM, SGLang and
    /// llama.cpp generate every token asked for.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub extra_body: serde_json::Map<String, serde_json::Value>,
    /// Overrides the scenario tier's slots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slots: Option<u32>,
    /// Overrides the scenario tier's rate limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// Overrides the scenario tier's tokens-per-minute limit (your
    /// account's real limits, e.g. as `x-ratelimit-limit-tokens` reports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_limit: Option<crate::scenario::TokenLimit>,
}

/// The chat request field that carries the call's output size. OpenAI's
/// reasoning models (the o-series, gpt-5) refuse `max_tokens` (HTTP 400)
/// and take `max_completion_tokens`, which most other servers (llama.cpp,
/// older vLLM, mock servers) do not know.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaxTokensParam {
    /// `max_tokens` (the default: every OpenAI-compatible server takes it).
    #[default]
    MaxTokens,
    /// `max_completion_tokens`.
    MaxCompletionTokens,
}

impl MaxTokensParam {
    /// The field's name in a request.
    pub fn name(self) -> &'static str {
        match self {
            MaxTokensParam::MaxTokens => "max_tokens",
            MaxTokensParam::MaxCompletionTokens => "max_completion_tokens",
        }
    }

    fn is_default(&self) -> bool {
        *self == MaxTokensParam::default()
    }
}

/// The request fields the executor sets, which an endpoint's `extra_body`
/// may not replace: the model, the prompt, streaming with usage (what the
/// measurements are read from) and the output size.
const EXECUTOR_FIELDS: [&str; 7] = [
    "model",
    "messages",
    "input",
    "stream",
    "stream_options",
    "max_tokens",
    "max_completion_tokens",
];

/// A tier endpoint, resolved: the URL split, the key read.
#[derive(Clone)]
pub struct ResolvedEndpoint {
    /// Whether it is served over TLS (`https://`).
    pub tls: bool,
    /// `host:port`, or `host` for the scheme's default port.
    pub authority: String,
    /// Path prefix (`/v1`).
    pub path: String,
    /// The base URL's query (`?api-version=2024-10-21`), or empty: every
    /// request's URL ends with it.
    pub query: String,
    /// Model names by scenario model index.
    pub models: Vec<String>,
    /// The key's header and value (`Authorization: Bearer ...`), if a key
    /// is configured.
    pub(crate) auth: Option<(http::HeaderName, http::HeaderValue)>,
    /// Extra headers.
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// The chat request field for the output size.
    pub max_tokens_param: MaxTokensParam,
    /// Fields added to every request body.
    pub extra_body: serde_json::Map<String, serde_json::Value>,
    /// The base URL as given (for reports; never holds the key).
    pub base_url: String,
}

impl std::fmt::Debug for ResolvedEndpoint {
    // The key stays out of debug output too.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResolvedEndpoint")
            .field("base_url", &self.base_url)
            .field("models", &self.models)
            .field("auth", &self.auth.as_ref().map(|_| "<set>"))
            .finish()
    }
}

fn bad(file: &str, field: &str, msg: impl std::fmt::Display) -> Error {
    Error::Input(format!("{file}: {field}: {msg}"))
}

impl EndpointsFile {
    /// Reads and parses a file (exit 2 naming the file and field on error).
    pub fn read(path: &Path) -> Result<EndpointsFile> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let file = path.display().to_string();
        let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
            Error::Input(format!(
                "{file}: line {} column {}: invalid JSON: {e}",
                e.line(),
                e.column()
            ))
        })?;
        serde_path_to_error::deserialize(value).map_err(|e| {
            let (field, msg) = crate::error::field_and_message(&e);
            let field = if field.is_empty() {
                "endpoints".into()
            } else {
                field
            };
            bad(&file, &field, msg)
        })
    }

    /// Checks the file against a scenario, applies its slot, rate-limit
    /// and token-limit overrides to `s` (then re-validated), and resolves every endpoint:
    /// `[provider][tier]` in the scenario's order.
    pub fn resolve(
        &self,
        file: &str,
        s: &mut Scenario,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Vec<Vec<ResolvedEndpoint>>> {
        for name in self.providers.keys() {
            if !s.providers.contains_key(name) {
                let known: Vec<&str> = s.providers.keys().map(String::as_str).collect();
                return Err(bad(
                    file,
                    &format!("providers.{name}"),
                    format!(
                        "not a provider of the scenario (expected one of {})",
                        known.join(", ")
                    ),
                ));
            }
        }
        let mut out = Vec::new();
        for (pname, provider) in s.providers.iter_mut() {
            let Some(eps) = self.providers.get(pname) else {
                return Err(bad(
                    file,
                    &format!("providers.{pname}"),
                    "missing: every provider of the scenario needs an endpoint per tier",
                ));
            };
            if eps.len() != provider.tiers.len() {
                return Err(bad(
                    file,
                    &format!("providers.{pname}"),
                    format!(
                        "expected {} tier endpoints (one per scenario tier), got {}",
                        provider.tiers.len(),
                        eps.len()
                    ),
                ));
            }
            let mut tiers = Vec::new();
            for (k, (ep, tier)) in eps.iter().zip(provider.tiers.iter_mut()).enumerate() {
                let field = format!("providers.{pname}.{k}");
                if let Some(x) = ep.slots {
                    tier.slots = x;
                }
                if let Some(r) = &ep.rate_limit {
                    tier.rate_limit = Some(r.clone());
                }
                if let Some(r) = &ep.token_limit {
                    tier.token_limit = Some(r.clone());
                }
                let (tls, authority, path, query) = split_url(&ep.base_url)
                    .map_err(|m| bad(file, &format!("{field}.base_url"), m))?;
                if ep.model.is_empty() {
                    return Err(bad(
                        file,
                        &format!("{field}.model"),
                        "expected a model name",
                    ));
                }
                let scenario_models: Vec<String> = if tier.models.is_empty() {
                    vec!["default".into()]
                } else {
                    tier.models.iter().map(|m| m.name.clone()).collect()
                };
                for m in ep.models.keys() {
                    if !scenario_models.contains(m) {
                        return Err(bad(
                            file,
                            &format!("{field}.models.{m}"),
                            format!(
                                "not a model of this scenario tier (expected one of {})",
                                scenario_models.join(", ")
                            ),
                        ));
                    }
                }
                let models = scenario_models
                    .iter()
                    .enumerate()
                    .map(|(i, m)| match ep.models.get(m) {
                        Some(x) => x.clone(),
                        None if i == 0 => ep.model.clone(),
                        None => m.clone(),
                    })
                    .collect();
                let key_header = match &ep.api_key_header {
                    None => http::header::AUTHORIZATION,
                    Some(h) => http::HeaderName::from_bytes(h.as_bytes()).map_err(|_| {
                        bad(
                            file,
                            &format!("{field}.api_key_header"),
                            format!("expected a header name such as api-key, got {h:?}"),
                        )
                    })?,
                };
                if ep.api_key_header.is_some() && ep.api_key_env.is_none() {
                    return Err(bad(
                        file,
                        &format!("{field}.api_key_header"),
                        "names the key's header, but api_key_env (the variable holding the key) is missing",
                    ));
                }
                let auth = match &ep.api_key_env {
                    None => None,
                    Some(var) => {
                        let key = env(var).ok_or_else(|| {
                            bad(
                                file,
                                &format!("{field}.api_key_env"),
                                format!("environment variable {var} is not set"),
                            )
                        })?;
                        let value = if key_header == http::header::AUTHORIZATION {
                            format!("Bearer {key}")
                        } else {
                            key
                        };
                        let mut v = http::HeaderValue::from_str(&value).map_err(|_| {
                            bad(
                                file,
                                &format!("{field}.api_key_env"),
                                format!("the value of {var} is not a valid header value"),
                            )
                        })?;
                        v.set_sensitive(true);
                        Some((key_header, v))
                    }
                };
                let mut headers = Vec::new();
                for (h, v) in &ep.headers {
                    let name = http::HeaderName::from_bytes(h.as_bytes()).map_err(|_| {
                        bad(
                            file,
                            &format!("{field}.headers.{h}"),
                            "not a valid header name",
                        )
                    })?;
                    let value = http::HeaderValue::from_str(v).map_err(|_| {
                        bad(
                            file,
                            &format!("{field}.headers.{h}"),
                            "not a valid header value",
                        )
                    })?;
                    headers.push((name, value));
                }
                if let Some(k) = ep
                    .extra_body
                    .keys()
                    .find(|k| EXECUTOR_FIELDS.contains(&k.as_str()))
                {
                    return Err(bad(
                        file,
                        &format!("{field}.extra_body.{k}"),
                        format!(
                            "the executor sets this field itself (it sets {}): remove it",
                            EXECUTOR_FIELDS.join(", ")
                        ),
                    ));
                }
                tiers.push(ResolvedEndpoint {
                    tls,
                    authority,
                    path,
                    query,
                    models,
                    auth,
                    headers,
                    max_tokens_param: ep.max_tokens_param,
                    extra_body: ep.extra_body.clone(),
                    base_url: ep.base_url.clone(),
                });
            }
            out.push(tiers);
        }
        // The overrides must leave a valid scenario.
        *s = Scenario::from_value(s.to_value())
            .map_err(|e| Error::Input(format!("{file}: after its overrides, the scenario: {e}")))?;
        Ok(out)
    }
}

impl ResolvedEndpoint {
    /// `https` or `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }

    /// `host:port`, the scheme's default port filled in (for a plain
    /// TCP connection, which has no default).
    pub fn host_port(&self) -> String {
        let has_port = http::uri::Authority::try_from(self.authority.as_str())
            .is_ok_and(|a| a.port_u16().is_some());
        match (has_port, self.tls) {
            (true, _) => self.authority.clone(),
            (false, true) => format!("{}:443", self.authority),
            (false, false) => format!("{}:80", self.authority),
        }
    }
}

/// Splits `http://host:port/prefix` or `https://...` into (TLS or not,
/// `host:port`, `/prefix`).
/// `(tls, authority, path, query)` of a base URL; the query keeps its `?`.
fn split_url(url: &str) -> std::result::Result<(bool, String, String, String), String> {
    let (tls, rest) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
        (Some(rest), _) => (false, rest),
        (_, Some(rest)) => (true, rest),
        _ => {
            return Err(format!(
                "expected an http:// or https:// URL such as http://127.0.0.1:8080/v1, got {url:?}"
            ));
        }
    };
    if rest.contains('#') {
        return Err(format!(
            "expected no #fragment in {url:?} (it is never sent to a server)"
        ));
    }
    let (rest, query) = match rest.find('?') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if authority.is_empty() {
        return Err(format!("expected a host in {url:?}"));
    }
    http::uri::Authority::try_from(authority)
        .map_err(|e| format!("invalid host:port in {url:?}: {e}"))?;
    let path = path.trim_end_matches('/');
    let uri = format!("http://{authority}{path}/chat/completions{query}");
    uri.parse::<http::Uri>()
        .map_err(|e| format!("invalid path or query in {url:?}: {e}"))?;
    Ok((
        tls,
        authority.to_string(),
        path.to_string(),
        query.to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(json: &str) -> EndpointsFile {
        serde_json::from_str(json).unwrap()
    }

    fn two_tiers(p: &str) -> String {
        format!(
            r#"{{"base_url":"http://127.0.0.1:1/v1","model":"{p}0","api_key_env":"K"}},
               {{"base_url":"http://127.0.0.1:2/v1/","model":"{p}1","slots":9,
                 "token_limit":{{"tokens_per_min":90000,"token_burst":90000}}}}"#
        )
    }

    #[test]
    fn resolves_every_tier_and_applies_overrides() {
        let mut s = Scenario::default_research_agent();
        let f = file(&format!(
            r#"{{"providers":{{"llm_provider":[{}],"embed_provider":[{}]}}}}"#,
            two_tiers("l"),
            two_tiers("e")
        ));
        let r = f
            .resolve("e.json", &mut s, |k| (k == "K").then(|| "sk-123".into()))
            .unwrap();
        assert_eq!(r.len(), 2);
        // Providers in scenario order: embed_provider, llm_provider.
        assert_eq!(r[1][0].models, vec!["l0".to_string(), "small".to_string()]);
        assert_eq!(r[1][1].path, "/v1");
        assert_eq!(r[1][0].authority, "127.0.0.1:1");
        assert_eq!(s.providers["llm_provider"].tiers[1].slots, 9);
        assert_eq!(
            s.providers["llm_provider"].tiers[1]
                .token_limit
                .as_ref()
                .map(|t| t.token_burst),
            Some(90_000)
        );
        assert!(!format!("{:?}", r[1][0]).contains("sk-123"));
    }

    /// OpenAI's reasoning models take the output size as
    /// `max_completion_tokens`; every other endpoint keeps `max_tokens`.
    #[test]
    fn the_output_size_field_is_chosen_per_endpoint() {
        let mut s = Scenario::default_research_agent();
        let reasoning = r#"{"base_url":"https://api.openai.com/v1","model":"o4-mini",
                            "max_tokens_param":"max_completion_tokens"}"#;
        let plain = r#"{"base_url":"https://api.openai.com/v1","model":"gpt-4.1-mini"}"#;
        let json = format!(
            r#"{{"providers":{{"llm_provider":[{reasoning},{plain}],"embed_provider":[{}]}}}}"#,
            two_tiers("e")
        );
        let f = file(&json);
        let r = f.resolve("e.json", &mut s, |_| Some("k".into())).unwrap();
        assert_eq!(r[1][0].max_tokens_param.name(), "max_completion_tokens");
        assert_eq!(r[1][1].max_tokens_param.name(), "max_tokens");
        // Written back, the default stays out of the file.
        let back = serde_json::to_string(&f).unwrap();
        assert_eq!(back.matches("max_tokens_param").count(), 1, "{back}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.json");
        std::fs::write(
            &path,
            json.replace("max_completion_tokens", "max_output_tokens"),
        )
        .unwrap();
        let e = EndpointsFile::read(&path).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let e = e.to_string();
        assert!(
            e.contains("e.json: providers.llm_provider.0.max_tokens_param: unknown variant `max_output_tokens`, expected `max_tokens` or `max_completion_tokens`"),
            "{e}"
        );
    }

    /// `extra_body` goes through as given; a field the executor sets is
    /// refused naming it, and a body that is not an object naming
    /// `extra_body`.
    #[test]
    fn extra_body_may_add_fields_but_not_replace_the_executors() {
        let with = |extra: &str| {
            let tier = format!(
                r#"{{"base_url":"http://127.0.0.1:1/v1","model":"m","extra_body":{extra}}}"#
            );
            format!(
                r#"{{"providers":{{"llm_provider":[{tier},{tier}],"embed_provider":[{}]}}}}"#,
                two_tiers("e")
            )
        };
        let mut s = Scenario::default_research_agent();
        let r = file(&with(
            r#"{"ignore_eos":true,"chat_template_kwargs":{"x":1}}"#,
        ))
        .resolve("e.json", &mut s, |_| Some("k".into()))
        .unwrap();
        assert_eq!(
            serde_json::Value::from(r[1][0].extra_body.clone()),
            serde_json::json!({"ignore_eos": true, "chat_template_kwargs": {"x": 1}})
        );
        assert!(r[0][0].extra_body.is_empty());
        for k in EXECUTOR_FIELDS {
            let mut s = Scenario::default_research_agent();
            let e = file(&with(&format!(r#"{{"{k}":1}}"#)))
                .resolve("e.json", &mut s, |_| Some("k".into()))
                .unwrap_err();
            assert_eq!(e.exit_code(), 2);
            let e = e.to_string();
            assert!(
                e.contains(&format!("e.json: providers.llm_provider.0.extra_body.{k}: the executor sets this field itself")),
                "{e}"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.json");
        std::fs::write(&path, with("[1]")).unwrap();
        let e = EndpointsFile::read(&path).unwrap_err().to_string();
        assert!(e.contains("providers.llm_provider.0.extra_body: "), "{e}");
    }

    /// Azure OpenAI: the key in `api-key` as it is, the API version in
    /// every URL's query.
    #[test]
    fn a_key_header_and_a_query_as_azure_wants_them() {
        let mut s = Scenario::default_research_agent();
        let tier = r#"{"base_url":"https://r.openai.azure.com/openai/deployments/d?api-version=2024-10-21",
                       "model":"d","api_key_env":"K","api_key_header":"api-key"}"#;
        let f = file(&format!(
            r#"{{"providers":{{"llm_provider":[{tier},{tier}],"embed_provider":[{}]}}}}"#,
            two_tiers("e")
        ));
        let r = f
            .resolve("e.json", &mut s, |_| Some("sk-9".into()))
            .unwrap();
        let (name, value) = r[1][0].auth.as_ref().unwrap();
        assert_eq!(
            (name.as_str(), value.to_str().unwrap()),
            ("api-key", "sk-9")
        );
        assert!(value.is_sensitive());
        assert_eq!(r[1][0].query, "?api-version=2024-10-21");
        // The default stays a bearer token.
        let (name, value) = r[0][0].auth.as_ref().unwrap();
        assert_eq!(
            (name.as_str(), value.to_str().unwrap()),
            ("authorization", "Bearer sk-9")
        );
        let bad_header = tier.replace("api-key", "api key");
        let f = file(&format!(
            r#"{{"providers":{{"llm_provider":[{bad_header},{tier}],"embed_provider":[{}]}}}}"#,
            two_tiers("e")
        ));
        let e = f
            .resolve("e.json", &mut s, |_| Some("k".into()))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("e.json: providers.llm_provider.0.api_key_header: expected a header name"),
            "{e}"
        );
        let no_key = tier.replace(r#""api_key_env":"K","#, "");
        let f = file(&format!(
            r#"{{"providers":{{"llm_provider":[{no_key},{tier}],"embed_provider":[{}]}}}}"#,
            two_tiers("e")
        ));
        let e = f
            .resolve("e.json", &mut s, |_| Some("k".into()))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(
                "providers.llm_provider.0.api_key_header: names the key's header, but api_key_env"
            ),
            "{e}"
        );
    }

    #[test]
    fn errors_name_the_file_and_field() {
        let mut s = Scenario::default_research_agent();
        let f = file(&format!(
            r#"{{"providers":{{"llm_provider":[{}]}}}}"#,
            two_tiers("l")
        ));
        let e = f
            .resolve("e.json", &mut s, |_| Some("k".into()))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("e.json: providers.embed_provider: missing"),
            "{e}"
        );
        let f = file(
            r#"{"providers":{"llm_provider":[{"base_url":"https://x/v1","model":"m"}],"embed_provider":[]}}"#,
        );
        let e = f
            .resolve("e.json", &mut s, |_| None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("providers.embed_provider: expected 2 tier endpoints"),
            "{e}"
        );
        let f = file(&format!(
            r#"{{"providers":{{"llm_provider":[{}],"embed_provider":[{}]}}}}"#,
            two_tiers("l"),
            two_tiers("e")
        ));
        let e = f
            .resolve("e.json", &mut s, |_| None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("providers.embed_provider.0.api_key_env: environment variable K"),
            "{e}"
        );
        // An override that leaves the scenario invalid names the field.
        let f = file(&format!(
            r#"{{"providers":{{"llm_provider":[{},{}],"embed_provider":[{}]}}}}"#,
            r#"{"base_url":"http://127.0.0.1:1/v1","model":"l0","token_limit":{"tokens_per_min":0,"token_burst":5}}"#,
            r#"{"base_url":"http://127.0.0.1:1/v1","model":"l1"}"#,
            two_tiers("e")
        ));
        let e = f
            .resolve("e.json", &mut s, |_| Some("k".into()))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("e.json") && e.contains("token_limit.tokens_per_min"),
            "{e}"
        );
        assert_eq!(
            split_url("http://127.0.0.1:9/v1").unwrap(),
            (false, "127.0.0.1:9".into(), "/v1".into(), String::new())
        );
        assert_eq!(
            split_url("https://api.example/v1/").unwrap(),
            (true, "api.example".into(), "/v1".into(), String::new())
        );
        // Azure OpenAI: the deployment in the path, the API version in the query.
        assert_eq!(
            split_url(
                "https://r.openai.azure.com/openai/deployments/gpt4o/?api-version=2024-10-21"
            )
            .unwrap(),
            (
                true,
                "r.openai.azure.com".into(),
                "/openai/deployments/gpt4o".into(),
                "?api-version=2024-10-21".into()
            )
        );
        assert_eq!(
            split_url("http://h:1?a=b").unwrap(),
            (false, "h:1".into(), String::new(), "?a=b".into())
        );
        assert!(split_url("https://api.example/v1#frag").is_err());
        assert!(split_url("https://api.example/v 1").is_err());
        assert!(split_url("ftp://api.example/v1").is_err());
        // A plain TCP connection (the audit's probe) gets the scheme's port.
        let ep = |url: &str| {
            let (tls, authority, path, query) = split_url(url).unwrap();
            ResolvedEndpoint {
                tls,
                authority,
                path,
                query,
                models: Vec::new(),
                auth: None,
                headers: Vec::new(),
                max_tokens_param: Default::default(),
                extra_body: Default::default(),
                base_url: url.into(),
            }
        };
        assert_eq!(ep("https://api.example/v1").host_port(), "api.example:443");
        assert_eq!(ep("http://api.example/v1").host_port(), "api.example:80");
        assert_eq!(
            ep("https://api.example:8443").host_port(),
            "api.example:8443"
        );
        assert_eq!(ep("https://api.example/v1").scheme(), "https");
        assert_eq!(ep("http://127.0.0.1:9/v1").scheme(), "http");
        assert!(split_url("api.example/v1").is_err());
        assert!(split_url("https:///v1").is_err());
    }
}
