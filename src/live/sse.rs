//! An incremental parser of OpenAI-style server-sent events
//! (`data: {json}` lines, `data: [DONE]` at the end), fed with whatever
//! byte chunks the connection delivers.

/// What one `data:` line said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SseEvent {
    /// A chunk with generated text: non-empty content, or a reasoning
    /// model's reasoning.
    Content,
    /// The usage chunk.
    Usage(Usage),
    /// A choice with a `finish_reason`.
    Finish,
    /// `[DONE]`.
    Done,
    /// A line that is not valid JSON, or an `error` object.
    Error(String),
}

/// The tokens a server reported for one request (`usage`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// `prompt_tokens`.
    pub prompt: u32,
    /// `completion_tokens` (0 for embeddings).
    pub completion: u32,
    /// Of the prompt tokens, those served from the provider's prompt
    /// cache, where it says: `prompt_tokens_details.cached_tokens` (OpenAI,
    /// vLLM, llama.cpp) or `prompt_cache_hit_tokens` (DeepSeek).
    pub cached_prompt: Option<u32>,
    /// Of the prompt tokens, those written to the provider's prompt cache,
    /// where it says: `cache_creation_input_tokens` (Anthropic's models
    /// behind OpenAI-compatible gateways such as LiteLLM).
    pub cache_write: Option<u32>,
}

impl Usage {
    /// Reads a `usage` object; a missing count is 0, and a count past u32
    /// saturates rather than wraps (it prices as the most).
    pub fn from_json(u: &serde_json::Value) -> Usage {
        let count =
            |x: &serde_json::Value| x.as_u64().map(|x| u32::try_from(x).unwrap_or(u32::MAX));
        let n = |k: &str| u.get(k).and_then(count).unwrap_or(0);
        let cached = u
            .get("prompt_tokens_details")
            .and_then(|d| d.get("cached_tokens"))
            .or_else(|| u.get("prompt_cache_hit_tokens"))
            .and_then(count);
        Usage {
            prompt: n("prompt_tokens"),
            completion: n("completion_tokens"),
            cached_prompt: cached,
            cache_write: u.get("cache_creation_input_tokens").and_then(count),
        }
    }
}

/// Usage summed over replies: the prompt tokens servers reported, and of
/// them those served from a prompt cache; each None until some reply said.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UsageTotals {
    /// Prompt tokens.
    pub prompt: Option<u64>,
    /// Cached prompt tokens.
    pub cached_prompt: Option<u64>,
}

impl UsageTotals {
    /// Adds one reply's usage.
    pub fn add(&mut self, u: Usage) {
        *self.prompt.get_or_insert(0) += u64::from(u.prompt);
        if let Some(c) = u.cached_prompt {
            *self.cached_prompt.get_or_insert(0) += u64::from(c);
        }
    }

    /// The share of the prompt tokens served from a cache, where known.
    pub fn cached_share(&self) -> Option<f64> {
        match (self.cached_prompt, self.prompt) {
            (Some(c), Some(p)) if p > 0 => Some(c as f64 / p as f64),
            _ => None,
        }
    }
}

/// The longest `data:` line kept, in bytes. A streamed delta is a few
/// hundred bytes, and even a whole answer sent as one chunk is well under
/// this; a server that sends more without a newline is not streaming
/// events, and buffering it would take memory without bound.
pub const MAX_LINE_BYTES: usize = 4 << 20;

/// Buffers partial lines between chunks.
#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
    /// `buf[..scanned]` holds no newline: a long line arriving in many
    /// chunks is scanned once, not once per chunk.
    scanned: usize,
    /// Dropping the rest of an over-long line, up to its newline.
    skipping: bool,
}

impl SseParser {
    /// Feeds bytes; returns the events of every complete line. A line
    /// past [`MAX_LINE_BYTES`] is one `oversized_sse_line` error, and the
    /// parser goes on at the next line.
    pub fn push(&mut self, mut bytes: &[u8]) -> Vec<SseEvent> {
        let mut out = Vec::new();
        if self.skipping {
            match bytes.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    self.skipping = false;
                    bytes = &bytes[i + 1..];
                }
                None => return out,
            }
        }
        self.buf.extend_from_slice(bytes);
        let mut start = 0;
        let mut from = self.scanned;
        while let Some(i) = self.buf[from..].iter().position(|&b| b == b'\n') {
            let end = from + i;
            parse_line(&self.buf[start..end], &mut out);
            start = end + 1;
            from = start;
        }
        self.buf.drain(..start);
        self.scanned = self.buf.len();
        if self.buf.len() > MAX_LINE_BYTES {
            out.push(SseEvent::Error("oversized_sse_line".into()));
            self.buf.clear();
            self.scanned = 0;
            self.skipping = true;
        }
        out
    }
}

fn parse_line(line: &[u8], out: &mut Vec<SseEvent>) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Some(data) = line.strip_prefix(b"data:") else {
        return; // blank separators, comments, `event:` and `id:` fields
    };
    let data = data.trim_ascii();
    if data == b"[DONE]" {
        out.push(SseEvent::Done);
        return;
    }
    let v: serde_json::Value = match serde_json::from_slice(data) {
        Ok(v) => v,
        Err(_) => {
            out.push(SseEvent::Error("malformed_sse".into()));
            return;
        }
    };
    if v.get("error").is_some_and(|e| !e.is_null()) {
        out.push(SseEvent::Error("stream_error".into()));
        return;
    }
    if let Some(choices) = v.get("choices").and_then(|c| c.as_array()) {
        for c in choices {
            // A reasoning model's thinking (`reasoning_content`: DeepSeek,
            // vLLM; `reasoning`: OpenRouter, newer vLLM) is generated
            // tokens too: its first is the first token, and the answer may
            // hold none (max_tokens spent thinking).
            let delta = c.get("delta");
            let generated = ["content", "reasoning_content", "reasoning"]
                .iter()
                .any(|k| {
                    delta
                        .and_then(|d| d.get(k))
                        .and_then(|x| x.as_str())
                        .is_some_and(|x| !x.is_empty())
                });
            if generated {
                out.push(SseEvent::Content);
            }
            if c.get("finish_reason").is_some_and(|f| !f.is_null()) {
                out.push(SseEvent::Finish);
            }
        }
    }
    if let Some(u) = v.get("usage").filter(|u| !u.is_null()) {
        out.push(SseEvent::Usage(Usage::from_json(u)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_across_chunk_boundaries() {
        let stream = concat!(
            "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"},\"finish_reason\":null}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"},\"finish_reason\":null}]}\r\n\r\n",
            ": keep-alive\n\n",
            "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":2}}\n\n",
            "data: [DONE]\n\n"
        );
        // Every split point gives the same events.
        let whole = SseParser::default().push(stream.as_bytes());
        assert_eq!(
            whole,
            vec![
                SseEvent::Content,
                SseEvent::Finish,
                SseEvent::Usage(Usage {
                    prompt: 7,
                    completion: 2,
                    cached_prompt: None,
                    cache_write: None
                }),
                SseEvent::Done
            ]
        );
        for cut in 0..stream.len() {
            let mut p = SseParser::default();
            let mut evs = p.push(&stream.as_bytes()[..cut]);
            evs.extend(p.push(&stream.as_bytes()[cut..]));
            assert_eq!(evs, whole, "split at {cut}");
        }
    }

    #[test]
    fn a_reasoning_models_thinking_is_generated_tokens() {
        let evs = SseParser::default().push(concat!(
            "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":null,\"reasoning_content\":\"\"}}]}\n",
            "data: {\"choices\":[{\"delta\":{\"content\":null,\"reasoning_content\":\"Let\"}}]}\n",
            "data: {\"choices\":[{\"delta\":{\"reasoning\":\" me\"}}]}\n",
            "data: {\"choices\":[{\"delta\":{\"reasoning\":null,\"content\":\"42\"}}]}\n",
            "data: {\"choices\":[{\"delta\":{\"reasoning_content\":7}}]}\n",
        ).as_bytes());
        // The empty, null and non-string ones are not.
        assert_eq!(evs, vec![SseEvent::Content; 3]);
    }

    #[test]
    fn usage_past_u32_saturates() {
        let evs = SseParser::default().push(
            b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":4294967301,\"completion_tokens\":3}}\n\n",
        );
        let usage = Usage {
            prompt: u32::MAX,
            completion: 3,
            cached_prompt: None,
            cache_write: None,
        };
        assert_eq!(evs, vec![SseEvent::Usage(usage)]);
    }

    #[test]
    fn cached_prompt_tokens_as_openai_and_deepseek_report_them() {
        let usage = |json: &str| Usage::from_json(&serde_json::from_str(json).unwrap());
        let openai = r#"{"prompt_tokens":2006,"completion_tokens":300,
            "prompt_tokens_details":{"cached_tokens":1920,"audio_tokens":0}}"#;
        assert_eq!(
            usage(openai),
            Usage {
                prompt: 2006,
                completion: 300,
                cached_prompt: Some(1920),
                cache_write: None
            }
        );
        let deepseek = r#"{"prompt_tokens":100,"completion_tokens":5,
            "prompt_cache_hit_tokens":64,"prompt_cache_miss_tokens":36}"#;
        assert_eq!(usage(deepseek).cached_prompt, Some(64));
        // Said to be none, and not said at all, are told apart.
        let zero = r#"{"prompt_tokens":9,"prompt_tokens_details":{"cached_tokens":0}}"#;
        assert_eq!(usage(zero).cached_prompt, Some(0));
        assert_eq!(usage(r#"{"prompt_tokens":9}"#).cached_prompt, None);
        let null = r#"{"prompt_tokens":9,"prompt_tokens_details":null}"#;
        assert_eq!(usage(null).cached_prompt, None);
        assert_eq!(usage(null).cache_write, None);
        // A gateway in front of Anthropic reports reads and writes.
        let litellm = r#"{"prompt_tokens":2100,"completion_tokens":40,
            "prompt_tokens_details":{"cached_tokens":0},
            "cache_creation_input_tokens":2048,"cache_read_input_tokens":0}"#;
        assert_eq!(
            usage(litellm),
            Usage {
                prompt: 2100,
                completion: 40,
                cached_prompt: Some(0),
                cache_write: Some(2048)
            }
        );
    }

    #[test]
    fn an_oversized_line_is_one_error_and_the_parser_goes_on() {
        let mut p = SseParser::default();
        let chunk = vec![b'x'; 1 << 20];
        let mut evs = Vec::new();
        evs.extend(p.push(b"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: "));
        for _ in 0..6 {
            evs.extend(p.push(&chunk));
            assert!(p.buf.len() <= MAX_LINE_BYTES, "{}", p.buf.len());
        }
        evs.extend(p.push(b"xx\ndata: [DONE]\n"));
        assert_eq!(
            evs,
            vec![
                SseEvent::Content,
                SseEvent::Error("oversized_sse_line".into()),
                SseEvent::Done
            ]
        );
        // A line just under the limit, in pieces, is parsed (and rejected
        // as JSON, not as too long).
        let mut p = SseParser::default();
        let mut evs = p.push(b"data: ");
        let body = vec![b'y'; MAX_LINE_BYTES - 7];
        for piece in body.chunks(1 << 16) {
            evs.extend(p.push(piece));
        }
        evs.extend(p.push(b"\n"));
        assert_eq!(evs, vec![SseEvent::Error("malformed_sse".into())]);
    }

    #[test]
    fn malformed_lines_are_errors() {
        let evs = SseParser::default()
            .push(b"data: {not json\n\ndata: {\"error\":{\"message\":\"x\"}}\n");
        assert_eq!(
            evs,
            vec![
                SseEvent::Error("malformed_sse".into()),
                SseEvent::Error("stream_error".into())
            ]
        );
    }
}
