//! The decoder's checkable promises, shared by the fuzz targets and the randomized tests.
//!
//! [`Checker::check_frame`] decodes arbitrary bytes and, when they decode, renders the record back to a
//! wire frame, decodes that, and compares the two canonical records. It returns an error string
//! only when a promise is broken; an input that is merely invalid is fine (the decoder must say
//! so with an error, which it does by returning `Err`, never by panicking).
//!
//! [`Checker::check_fast_path`] decodes the same bytes through [`Decoder::decode`] (byte-level
//! fast path first), [`Decoder::decode_tape_only`] (simd-json only) and [`Decoder::decode_into`]
//! (into a record slot the checker keeps from one input to the next, so that whatever an earlier
//! frame left in it must not show through) and requires identical results: the same record and
//! auxiliary data, or the same error.

use crate::{Decoder, Record, render_frame, write_canonical, write_error};

/// Reusable state for [`Checker::check_frame`].
#[derive(Debug, Default)]
pub struct Checker {
    first: Decoder,
    second: Decoder,
    third: Decoder,
    slot: Record,
    scratch: Vec<u8>,
    rendered: Vec<u8>,
    first_json: Vec<u8>,
    second_json: Vec<u8>,
}

/// Which path [`Checker::check_fast_path`] saw [`Decoder::decode`] take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathOutcome {
    /// The fast path decoded the frame (to the same record as the simd-json path).
    Fast,
    /// The fast path declined, and the simd-json path gave the result.
    Declined,
}

/// What [`Checker::check_frame`] saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The frame decoded and survived the render/decode round trip unchanged.
    RoundTripped,
    /// The frame was rejected with a decode error (whose canonical error line is valid).
    Rejected,
}

impl Checker {
    /// Decodes `input` through both paths, and through [`Decoder::decode_into`], and compares
    /// the complete results.
    ///
    /// # Errors
    /// A description of the difference when the two paths disagree.
    pub fn check_fast_path(&mut self, input: &[u8]) -> Result<PathOutcome, String> {
        self.scratch.clear();
        self.scratch.extend_from_slice(input);
        self.rendered.clear();
        self.rendered.extend_from_slice(input);
        let fast_before = self.first.stats().fast_path;
        let fast = self.first.decode(&mut self.scratch);
        let slow = self.second.decode_tape_only(&mut self.rendered);
        if fast != slow {
            return Err(format!(
                "the fast path and the simd-json path disagree on {}\n fast: {fast:?}\n slow: {slow:?}",
                String::from_utf8_lossy(input)
            ));
        }
        self.rendered.clear();
        self.rendered.extend_from_slice(input);
        let into = self
            .third
            .decode_into(&mut self.rendered, &mut self.slot)
            .map(|aux| (self.slot, aux));
        let into_same = match (&into, &slow) {
            (Ok((record, aux)), Ok(slow)) => *record == slow.record && *aux == slow.aux,
            (Err(into), Err(slow)) => into == slow,
            _ => false,
        };
        if !into_same {
            return Err(format!(
                "decode_into and the simd-json path disagree on {}\n into: {into:?}\n slow: {slow:?}",
                String::from_utf8_lossy(input)
            ));
        }
        let took_fast = self.first.stats().fast_path != fast_before;
        Ok(if took_fast {
            PathOutcome::Fast
        } else {
            PathOutcome::Declined
        })
    }

    /// Checks one input; `Err` describes a broken promise.
    ///
    /// # Errors
    /// A description of the broken invariant: a rendered frame that does not decode, or decodes
    /// to a different record.
    pub fn check_frame(&mut self, input: &[u8]) -> Result<Outcome, String> {
        self.scratch.clear();
        self.scratch.extend_from_slice(input);
        self.first_json.clear();
        self.rendered.clear();
        match self.first.decode(&mut self.scratch) {
            Ok(decoded) => {
                write_canonical(&decoded, &mut self.first_json);
                render_frame(&decoded, &mut self.rendered);
            }
            Err(error) => {
                write_error(&error, &mut self.first_json);
                return Ok(Outcome::Rejected);
            }
        }
        self.second_json.clear();
        let mut again = self.rendered.clone();
        match self.second.decode(&mut again) {
            Ok(decoded) => write_canonical(&decoded, &mut self.second_json),
            Err(error) => {
                return Err(format!(
                    "rendered frame does not decode ({error}): {}",
                    String::from_utf8_lossy(&self.rendered)
                ));
            }
        }
        if self.first_json != self.second_json {
            return Err(format!(
                "round trip changed the record:\n first: {}\nsecond: {}\nrender: {}",
                String::from_utf8_lossy(&self.first_json),
                String::from_utf8_lossy(&self.second_json),
                String::from_utf8_lossy(&self.rendered)
            ));
        }
        Ok(Outcome::RoundTripped)
    }
}
