//! Moonshine base-en through ort (model files only: the wheel's own libmoonshine.so does not run on
//! every x86-64 CPU). Encoder: raw 16 kHz samples -> hidden states [1,T,416]. Merged decoder with a KV
//! cache: the first step runs with empty pasts and `use_cache_branch = false` and also returns the
//! cross-attention (encoder) keys/values, which stay fixed; later steps feed one token and the growing
//! self-attention cache. Greedy decoding from BOS until EOS or the token bound.

use std::borrow::Cow;
use std::path::Path;

use ort::session::{Session, SessionInputValue};
use ort::value::{DynValue, Tensor, TensorRef};

use super::AsrError;
use super::tokenizer::Tokenizer;
use super::vad::SAMPLE_RATE;
use crate::encode::runtime::{SessionOptions, open_session};

const BOS: i64 = 1;
const EOS: u32 = 2;
const HEADS: usize = 8;
const HEAD_DIM: usize = 52;

/// One decoded utterance.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub text: String,
    pub tokens: Vec<u32>,
    /// Mean log-probability of the emitted tokens (EOS included): near 0 = confident.
    pub mean_logprob: f32,
    /// Decoding stopped at the token bound rather than at EOS.
    pub truncated: bool,
}

pub struct Moonshine {
    encoder: Session,
    decoder: Session,
    tokenizer: Tokenizer,
    /// Input names per layer: (decoder.key, decoder.value, encoder.key, encoder.value).
    past_names: Vec<[String; 4]>,
    present_names: Vec<[String; 4]>,
    max_tokens_per_sec: f32,
}

impl Moonshine {
    /// Opens `dir/encoder_model.ort`, `dir/decoder_model_merged.ort` and `dir/tokenizer.bin`.
    pub fn open(dir: &Path, opts: SessionOptions, max_tokens_per_sec: f32) -> Result<Self, AsrError> {
        let encoder = open_session(&dir.join("encoder_model.ort"), opts)?;
        let decoder = open_session(&dir.join("decoder_model_merged.ort"), opts)?;
        let tokenizer = Tokenizer::open(&dir.join("tokenizer.bin"))?;
        let layers = decoder
            .inputs()
            .iter()
            .filter(|i| i.name().starts_with("past_key_values.") && i.name().ends_with(".decoder.key"))
            .count();
        if layers == 0 {
            return Err(AsrError::Model(format!("{}: no KV-cache inputs in the decoder", dir.display())));
        }
        let names = |prefix: &str| {
            (0..layers)
                .map(|l| {
                    ["decoder.key", "decoder.value", "encoder.key", "encoder.value"]
                        .map(|k| format!("{prefix}.{l}.{k}"))
                })
                .collect::<Vec<_>>()
        };
        Ok(Moonshine {
            encoder,
            decoder,
            tokenizer,
            past_names: names("past_key_values"),
            present_names: names("present"),
            max_tokens_per_sec,
        })
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Transcribes 16 kHz mono samples (one utterance, up to about 30 s).
    pub fn transcribe(&mut self, samples: &[f32]) -> Result<Decoded, AsrError> {
        let secs = samples.len() as f32 / SAMPLE_RATE as f32;
        // Below ~0.1 s the encoder's strided convolutions produce no frames at all.
        if secs < 0.1 {
            return Ok(Decoded {
                text: String::new(),
                tokens: Vec::new(),
                mean_logprob: 0.0,
                truncated: false,
            });
        }
        let max_tokens = ((secs * self.max_tokens_per_sec).ceil() as usize).max(4);

        let mut enc_out = self.encoder.run(
            ort::inputs!["input_values" => TensorRef::from_array_view(([1usize, samples.len()], samples))?],
        )?;
        let hidden = enc_out
            .remove("last_hidden_state")
            .ok_or_else(|| AsrError::Model("encoder has no output last_hidden_state".into()))?;
        drop(enc_out);

        let layers = self.past_names.len();
        // Per layer: self-attention cache (grows) and cross-attention cache (fixed after step 1).
        let mut self_kv: Vec<[DynValue; 2]> = Vec::with_capacity(layers);
        let mut cross_kv: Vec<[DynValue; 2]> = Vec::with_capacity(layers);
        let empty = || -> Result<DynValue, AsrError> {
            Ok(Tensor::<f32>::from_array(([1usize, HEADS, 0, HEAD_DIM], Vec::<f32>::new()))?.into_dyn())
        };
        let mut tokens: Vec<u32> = Vec::new();
        let mut logprob_sum = 0f64;
        let mut last = BOS;
        let mut truncated = true;
        for step in 0..=max_tokens {
            let first = step == 0;
            let ids = Tensor::from_array(([1usize, 1], vec![last]))?;
            let use_cache = Tensor::from_array(([1usize], vec![!first]))?;
            let mut inputs: Vec<(Cow<'_, str>, SessionInputValue<'_>)> = Vec::with_capacity(3 + 4 * layers);
            inputs.push(("input_ids".into(), ids.into()));
            inputs.push(("encoder_hidden_states".into(), (&hidden).into()));
            inputs.push(("use_cache_branch".into(), use_cache.into()));
            for (l, names) in self.past_names.iter().enumerate() {
                if first {
                    for name in names {
                        inputs.push((name.as_str().into(), empty()?.into()));
                    }
                } else {
                    inputs.push((names[0].as_str().into(), (&self_kv[l][0]).into()));
                    inputs.push((names[1].as_str().into(), (&self_kv[l][1]).into()));
                    inputs.push((names[2].as_str().into(), (&cross_kv[l][0]).into()));
                    inputs.push((names[3].as_str().into(), (&cross_kv[l][1]).into()));
                }
            }
            let mut out = self.decoder.run(inputs)?;
            let (next, logprob) = {
                let (shape, logits) = out["logits"].try_extract_tensor::<f32>()?;
                let vocab = shape.last().map_or(0, |&v| v.max(0) as usize);
                argmax_logprob(logits, vocab)
                    .ok_or_else(|| AsrError::Model("decoder returned empty logits".into()))?
            };
            let missing = |n: &str| AsrError::Model(format!("decoder has no output {n}"));
            let mut new_self = Vec::with_capacity(layers);
            for names in &self.present_names {
                let k = out.remove(&names[0]).ok_or_else(|| missing(&names[0]))?;
                let v = out.remove(&names[1]).ok_or_else(|| missing(&names[1]))?;
                new_self.push([k, v]);
                if first {
                    let ek = out.remove(&names[2]).ok_or_else(|| missing(&names[2]))?;
                    let ev = out.remove(&names[3]).ok_or_else(|| missing(&names[3]))?;
                    cross_kv.push([ek, ev]);
                }
            }
            drop(out);
            self_kv = new_self;
            logprob_sum += logprob as f64;
            if next == EOS {
                truncated = false;
                tokens.push(next);
                break;
            }
            if step == max_tokens {
                break;
            }
            tokens.push(next);
            last = next as i64;
        }
        let n = tokens.len().max(1);
        let text = self.tokenizer.decode(&tokens);
        if truncated {
            tracing::debug!(secs, max_tokens, "ASR decoding hit the token bound");
        }
        tokens.retain(|&t| t != EOS);
        Ok(Decoded { text, tokens, mean_logprob: (logprob_sum / n as f64) as f32, truncated })
    }
}

/// Greedy choice over the last position's logits, with its log-probability.
fn argmax_logprob(logits: &[f32], vocab: usize) -> Option<(u32, f32)> {
    let vocab = vocab.min(logits.len());
    let row = &logits[logits.len() - vocab..];
    let (best, &max) = row.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1))?;
    let lse = max + row.iter().map(|&x| (x - max).exp()).sum::<f32>().ln();
    Some((best as u32, max - lse))
}

#[cfg(test)]
mod tests {
    #[test]
    fn argmax_logprob_is_a_log_softmax() {
        // Two positions; only the last one counts.
        let (id, lp) = super::argmax_logprob(&[9.0, 0.0, 0.0, 0.0, 2.0, 1.0], 3).unwrap();
        assert_eq!(id, 1);
        let want = 2.0 - (1.0 + 1f32.exp() + 2f32.exp()).ln();
        assert!((lp - want).abs() < 1e-5, "{lp} vs {want}");
    }
}
