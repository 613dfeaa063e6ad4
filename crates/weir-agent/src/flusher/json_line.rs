//! A fast writer of the people JSON form for the common entry: a log line with no tags.
//!
//! [`write_numbered`] writes exactly the bytes that `serde_json` writes for
//! [`PeopleJson::numbered`] (the tests compare them), without going through serde: the
//! escaping looks at sixteen bytes at a time on x86_64 (SSE2; with SSSE3, blocks whose
//! only escapes are `"` and `\` are spread by a shuffle, without a branch per escape;
//! with AVX-512 VBMI2, thirty-two bytes at a time, spread by a byte compress), eight
//! elsewhere, and the timestamp is formatted by hand. [`Encoder::lines`] writes the
//! plain log lines of an [`super::Entries::Lines`] run without making their envelopes,
//! with one reservation per line. Any other entry (tags, metrics, events, a payload that is not UTF-8) goes
//! through serde as before.

use std::mem::MaybeUninit;

use weir_core::Envelope;
use weir_core::json::PeopleJson;
use weir_core::json::civil_from_days;
use weir_proto::lv2::envelope::Message as Body;
use weir_proto::lv2::log;

use super::entries::{LogLine, LogLines};

/// Appends `env` as entry `index` of `stream` in the people JSON form (no newline).
pub fn write_numbered(out: &mut Vec<u8>, stream: &str, index: u64, env: &Envelope) {
    let mut enc = Encoder::default();
    enc.start_run(stream);
    enc.entry(out, stream, index, env);
}

/// Writes runs of entries as people JSON, reusing what consecutive entries share: the
/// stream's part (once per run), the timestamp's date and time of day (once per
/// second), the source and instance part (while they stay the same).
#[derive(Debug, Default)]
pub struct Encoder {
    /// `{"stream":"…","index":` of the current run.
    stream: Vec<u8>,
    /// `,"source_id":…,"instance_id":…,"tags":{},"type":"log","message":` and the two
    /// ids it was made for.
    ids: Vec<u8>,
    ids_of: Option<(String, String)>,
    /// The whole seconds and `YYYY-MM-DDTHH:MM:SS.` of the last timestamp.
    second: Option<(i64, [u8; 20])>,
    /// The last timestamp and its whole text, `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`.
    stamp: Option<(i64, [u8; 30])>,
    /// What [`Encoder::lines`] writes between a line's index and its message:
    /// `,"timestamp":"…","source_id":…,"instance_id":"","tags":{},"type":"log","message":`,
    /// and the timestamp and source it was made for.
    middle: Vec<u8>,
    middle_of: Option<(i64, std::sync::Arc<str>)>,
}

/// What ends every plain log line (stdout type) in the people JSON form.
const LINE_END: &[u8] = b",\"log_type\":\"OUT\"}\n";

impl Encoder {
    /// Entries of `stream` follow.
    pub fn start_run(&mut self, stream: &str) {
        self.stream.clear();
        self.stream.extend_from_slice(b"{\"stream\":");
        write_str(&mut self.stream, stream);
        self.stream.extend_from_slice(b",\"index\":");
    }

    /// Appends entry `index` of the current run's `stream` (given again for entries that
    /// take the serde path), without a newline.
    pub fn entry(&mut self, out: &mut Vec<u8>, stream: &str, index: u64, env: &Envelope) {
        let Some(Body::Log(l)) = &env.message else {
            return serde_form(out, stream, index, env);
        };
        if !env.tags.is_empty() || !env.deprecated_tags.is_empty() {
            return serde_form(out, stream, index, env);
        }
        let log = FastLog {
            index,
            timestamp: env.timestamp,
            source_id: &env.source_id,
            instance_id: &env.instance_id,
            payload: &l.payload,
            log_type: l.r#type,
        };
        if !self.fast_log(out, &log) {
            serde_form(out, stream, index, env);
        }
    }

    /// Appends `part`, entries `first_index..` of the current run's `stream` (lines of
    /// `lines`), each followed by a newline: for each, the bytes [`Encoder::entry`]
    /// writes for the envelope the line stands for.
    ///
    /// The run's parts are written with one reservation per line and no per-field
    /// capacity checks: the stream part, the index, the part that only changes with the
    /// timestamp (the lines of one read share it), the message, the end. Measured: the
    /// field-by-field form spent as much on its small copies as on escaping.
    pub fn lines(
        &mut self,
        out: &mut Vec<u8>,
        stream: &str,
        first_index: u64,
        lines: &LogLines,
        part: &[LogLine],
    ) {
        let mut digits = itoa::Buffer::new();
        for (index, line) in (first_index..).zip(part) {
            let same = self.middle_of.as_ref().is_some_and(|(ts, source)| {
                *ts == line.timestamp && std::sync::Arc::ptr_eq(source, &lines.source_id)
            });
            if !same {
                self.make_middle(line.timestamp, &lines.source_id);
            }
            let index_text = digits.format(index).as_bytes();
            let payload = &line.payload[..];
            // Room for the worst case: every byte of the message a six-byte escape,
            // its quotes, and the sixteen-byte stores of the escaping.
            let room = self.stream.len()
                + index_text.len()
                + self.middle.len()
                + payload.len() * 6
                + 2
                + LINE_END.len()
                + 16;
            out.reserve(room);
            let mark = out.len();
            let spare = &mut out.spare_capacity_mut()[..room];
            let mut w = put(spare, 0, &self.stream);
            w = put(spare, w, index_text);
            w = put(spare, w, &self.middle);
            spare[w].write(b'"');
            let (end, ascii) = escape_into(spare, w + 1, payload);
            spare[end].write(b'"');
            w = put(spare, end + 1, LINE_END);
            // SAFETY: `spare[..w]` was written (each step writes every position it moves
            // `w` past), and `w <= room`, which `reserve` made available after `mark`.
            unsafe { out.set_len(mark + w) };
            if !ascii && std::str::from_utf8(payload).is_err() {
                out.truncate(mark);
                serde_form(out, stream, index, &lines.envelope(line));
                out.push(b'\n');
            }
        }
    }

    /// Makes [`Encoder::lines`]' middle part for lines read at `ns` from `source_id`.
    fn make_middle(&mut self, ns: i64, source_id: &std::sync::Arc<str>) {
        let mut middle = std::mem::take(&mut self.middle);
        middle.clear();
        middle.extend_from_slice(b",\"timestamp\":\"");
        self.timestamp(&mut middle, ns);
        middle.extend_from_slice(b"\",\"source_id\":");
        write_str(&mut middle, source_id);
        middle
            .extend_from_slice(b",\"instance_id\":\"\",\"tags\":{},\"type\":\"log\",\"message\":");
        self.middle = middle;
        self.middle_of = Some((ns, source_id.clone()));
    }

    /// Writes a log entry without tags; false (nothing written) when its payload is not
    /// UTF-8 and it must take the serde path (base64).
    fn fast_log(&mut self, out: &mut Vec<u8>, log: &FastLog<'_>) -> bool {
        let mark = out.len();
        out.extend_from_slice(&self.stream);
        write_u64(out, log.index);
        out.extend_from_slice(b",\"timestamp\":\"");
        self.timestamp(out, log.timestamp);
        out.push(b'"');
        let same = self.ids_of.as_ref().is_some_and(|(s, i)| {
            short_eq(s.as_bytes(), log.source_id.as_bytes())
                && short_eq(i.as_bytes(), log.instance_id.as_bytes())
        });
        if !same {
            self.ids.clear();
            self.ids.extend_from_slice(b",\"source_id\":");
            write_str(&mut self.ids, log.source_id);
            self.ids.extend_from_slice(b",\"instance_id\":");
            write_str(&mut self.ids, log.instance_id);
            self.ids
                .extend_from_slice(b",\"tags\":{},\"type\":\"log\",\"message\":");
            self.ids_of = Some((log.source_id.to_string(), log.instance_id.to_string()));
        }
        out.extend_from_slice(&self.ids);
        // The message is escaped as it is; when it turns out not to be ASCII it is
        // checked for UTF-8 (a rare, slower path), and written again in the serde form
        // (base64) when it is not.
        if !write_escaped(out, log.payload) && std::str::from_utf8(log.payload).is_err() {
            out.truncate(mark);
            return false;
        }
        out.extend_from_slice(b",\"log_type\":");
        match log::Type::try_from(log.log_type) {
            Ok(t) => {
                out.push(b'"');
                out.extend_from_slice(t.as_str_name().as_bytes());
                out.push(b'"');
            }
            Err(_) => write_i64(out, i64::from(log.log_type)),
        }
        out.push(b'}');
        true
    }

    fn timestamp(&mut self, out: &mut Vec<u8>, ns: i64) {
        // The lines of one read share their timestamp: most are a copy of the last one.
        if let Some((last, text)) = &self.stamp
            && *last == ns
        {
            out.extend_from_slice(text);
            return;
        }
        let start = out.len();
        self.format_timestamp(out, ns);
        if let Ok(text) = <[u8; 30]>::try_from(&out[start..]) {
            self.stamp = Some((ns, text));
        }
    }

    fn format_timestamp(&mut self, out: &mut Vec<u8>, ns: i64) {
        let secs = ns.div_euclid(1_000_000_000);
        let nanos = ns.rem_euclid(1_000_000_000) as u64;
        match self.second {
            Some((s, prefix)) if s == secs => out.extend_from_slice(&prefix),
            _ => {
                let mut prefix = Vec::with_capacity(20);
                if !write_date_time(&mut prefix, secs) {
                    out.extend_from_slice(weir_core::json::format_rfc3339_nanos(ns).as_bytes());
                    return;
                }
                let mut fixed = [0u8; 20];
                fixed.copy_from_slice(&prefix);
                self.second = Some((secs, fixed));
                out.extend_from_slice(&prefix);
            }
        }
        write_digits(out, nanos, 9);
        out.push(b'Z');
    }
}

/// What the fast path writes of a log entry.
struct FastLog<'a> {
    index: u64,
    timestamp: i64,
    source_id: &'a str,
    instance_id: &'a str,
    payload: &'a [u8],
    log_type: i32,
}

/// Byte equality without a call into libc's `memcmp` for the short ids compared per
/// entry (the call dominated the comparison of a few bytes).
#[inline]
fn short_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && (a.len() > 32 && a == b || a.iter().zip(b).all(|(x, y)| x == y))
}

fn serde_form(out: &mut Vec<u8>, stream: &str, index: u64, env: &Envelope) {
    // Serialising into a Vec cannot fail for this type.
    let _ = serde_json::to_writer(&mut *out, &PeopleJson::numbered(stream, index, env));
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;
const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;

/// Per byte of the word, the high bit set exactly where the byte is a control byte
/// (0x00..=0x1f). No carry crosses a byte (every sum stays under 0x100 per byte).
#[inline]
fn control_mask(x: u64) -> u64 {
    // high bit clear and the low seven bits plus 0x60 stay under 0x80
    !((x & LOW7) + LO * 0x60) & !x & HI
}

/// Per byte of the word, the high bit set exactly where the byte is `"` or `\`.
#[inline]
fn quote_mask(x: u64) -> u64 {
    // high bit of each byte that is zero
    let zero = |v: u64| !(((v & LOW7) + LOW7) | v | LOW7);
    zero(x ^ (LO * b'"' as u64)) | zero(x ^ (LO * b'\\' as u64))
}

/// Per byte of the word, the high bit set exactly where the byte must be escaped: a
/// control byte, `"` or `\`.
#[cfg(test)]
fn escape_mask(x: u64) -> u64 {
    control_mask(x) | quote_mask(x)
}

/// What a byte becomes in a JSON string: 0 itself, `u` a `\u00XX` escape, any other
/// value the letter after a backslash (as `serde_json` writes them).
const ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        t[b] = b'u';
        b += 1;
    }
    t[b'\n' as usize] = b'n';
    t[b'\r' as usize] = b'r';
    t[b'\t' as usize] = b't';
    t[0x08] = b'b';
    t[0x0c] = b'f';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

/// Writes byte `b`, escaped, at `out[w..]`; returns the position after it. `out` has room
/// for six bytes at `w`.
#[inline(always)]
fn put_escaped(out: &mut [MaybeUninit<u8>], w: usize, b: u8) -> usize {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    match ESCAPE[usize::from(b)] {
        0 => {
            out[w].write(b);
            w + 1
        }
        b'u' => {
            out[w].write(b'\\');
            out[w + 1].write(b'u');
            out[w + 2].write(b'0');
            out[w + 3].write(b'0');
            out[w + 4].write(HEX[usize::from(b >> 4)]);
            out[w + 5].write(HEX[usize::from(b & 0xf)]);
            w + 6
        }
        letter => {
            out[w].write(b'\\');
            out[w + 1].write(letter);
            w + 2
        }
    }
}

/// Copies `bytes` to `out[w..]`; returns the position after them.
#[inline(always)]
fn put(out: &mut [MaybeUninit<u8>], w: usize, bytes: &[u8]) -> usize {
    let end = w + bytes.len();
    let dst = &mut out[w..end];
    // SAFETY: `dst` and `bytes` have the same length, and `bytes` is not part of `out`
    // (it is borrowed shared while `out` is borrowed mutably). `u8` and
    // `MaybeUninit<u8>` have the same layout.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), dst.as_mut_ptr().cast(), dst.len()) };
    end
}

/// `s` as a JSON string, escaped as `serde_json` escapes it.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    write_escaped(out, s.as_bytes());
}

/// `bytes` as a JSON string, escaped as `serde_json` escapes a `str` (bytes of 0x80 and
/// above are copied as they are). Returns whether every byte was ASCII.
///
/// Written by hand into the vector's spare capacity, after measuring: log lines carry a
/// `"` every 15 bytes or so, and escaping was the `tcp` flusher's largest cost. On
/// x86_64 sixteen bytes are looked at (and copied) at a time with SSE2; the rest goes
/// eight bytes at a time.
fn write_escaped(out: &mut Vec<u8>, bytes: &[u8]) -> bool {
    // Room for the worst case (every byte a six-byte escape, and the quotes), and for
    // the sixteen-byte stores that may write past the end of what is kept.
    let room = bytes.len() * 6 + 2 + 16;
    out.reserve(room);
    let start = out.len();
    let spare = &mut out.spare_capacity_mut()[..room];
    spare[0].write(b'"');
    let (mut w, ascii) = escape_into(spare, 1, bytes);
    spare[w].write(b'"');
    w += 1;
    // SAFETY: `spare[..w]` was written (every path writes each position it moves `w`
    // past), and `w <= room`, which `reserve` made available after `start`.
    unsafe { out.set_len(start + w) };
    ascii
}

/// Writes `bytes` escaped at `out[w..]` (room for six bytes per byte and sixteen more);
/// returns the position after them and whether every byte was ASCII.
#[cfg(target_arch = "x86_64")]
fn escape_into(out: &mut [MaybeUninit<u8>], w: usize, bytes: &[u8]) -> (usize, bool) {
    escape_x86(out, w, bytes, X86Level::detected())
}

/// Which of the x86_64 escaping paths the CPU can run.
#[cfg(target_arch = "x86_64")]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum X86Level {
    /// SSE2 only (every x86_64 CPU).
    Sse2,
    /// SSSE3 (and POPCNT): blocks of 16 spread by a shuffle.
    Ssse3,
    /// AVX-512 with VBMI2 (and BMI2): blocks of 32 spread by a byte compress.
    Avx512,
}

#[cfg(target_arch = "x86_64")]
impl X86Level {
    /// The best this CPU has (the standard library caches what it detects).
    fn detected() -> Self {
        use std::is_x86_feature_detected as has;
        if has!("avx512vbmi2") && has!("avx512bw") && has!("avx512vl") && has!("bmi2") {
            X86Level::Avx512
        } else if has!("ssse3") && has!("popcnt") {
            X86Level::Ssse3
        } else {
            X86Level::Sse2
        }
    }
}

/// [`escape_into`] on x86_64, at `level` (which the CPU must have): AVX-512 for what
/// it takes, SSSE3 for what is left of the 16-byte blocks, SSE2 after that.
#[cfg(target_arch = "x86_64")]
fn escape_x86(
    out: &mut [MaybeUninit<u8>],
    mut w: usize,
    bytes: &[u8],
    level: X86Level,
) -> (usize, bool) {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8, _mm_storeu_si128,
    };
    assert!(out.len() >= w + bytes.len() * 6 + 16);
    let mut i = 0;
    let mut high = 0;
    if level >= X86Level::Avx512 {
        // SAFETY: the caller checked that the CPU has these features.
        (w, i, high) = unsafe { escape_avx512(out, w, bytes) };
    }
    if level >= X86Level::Ssse3 && i < bytes.len() {
        // SAFETY: the caller checked that the CPU has SSSE3 and POPCNT. The room holds
        // for the rest: `w <= w0 + 6 * i`, so `w + 6 * (len - i) + 16 <= out.len()`.
        let (w2, used, h) = unsafe { escape_ssse3(out, w, &bytes[i..]) };
        (w, i, high) = (w2, i + used, high | h);
    }
    // SAFETY: SSE2 is part of every x86_64 CPU. Each load reads `bytes[i..i + 16]`, in
    // bounds by the loop condition. Each store writes `out[w..w + 16]`, in bounds: `w`
    // grows by at most six per byte of `bytes` consumed (`w <= w0 + 6 * i`), so with
    // `i + 16 <= bytes.len()`, `w + 16 <= w0 + 6 * bytes.len() <= out.len()` (asserted
    // above). Bytes stored past the escape found are written again before `w` moves
    // past them.
    unsafe {
        let quote = _mm_set1_epi8(b'"' as i8);
        let backslash = _mm_set1_epi8(b'\\' as i8);
        let last_control = _mm_set1_epi8(0x1f);
        while i + 16 <= bytes.len() {
            let v = _mm_loadu_si128(bytes.as_ptr().add(i).cast());
            _mm_storeu_si128(out.as_mut_ptr().add(w).cast(), v);
            high |= _mm_movemask_epi8(v);
            // control bytes are those that min(b, 0x1f) leaves as they are
            let control = _mm_cmpeq_epi8(_mm_min_epu8(v, last_control), v);
            let quotes = _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash));
            let mask = _mm_movemask_epi8(_mm_or_si128(control, quotes)) as u32;
            if mask == 0 {
                i += 16;
                w += 16;
                continue;
            }
            let plain = mask.trailing_zeros() as usize;
            i += plain;
            w = put_escaped(out, w + plain, bytes[i]);
            i += 1;
        }
    }
    let (w, ascii) = escape_words(out, w, &bytes[i..]);
    (w, ascii && high == 0)
}

/// The AVX-512 part of [`escape_x86`]: 32 bytes at a time. A block with escapes (and no
/// control byte) is widened to 16-bit words, each escaped byte's word made `\` + byte,
/// and the unused high bytes squeezed out with one `vpcompressb` (after the method in
/// Lemire, "Escaping strings faster with AVX-512", 2022): no branch per escape and no
/// table. The last 1–31 bytes go the same way through a masked load. Returns the
/// output position, the bytes consumed (all unless a control byte is in the last ones
/// or the room is short) and the `movemask` of their high bits.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vbmi2,bmi2,popcnt")]
fn escape_avx512(out: &mut [MaybeUninit<u8>], mut w: usize, bytes: &[u8]) -> (usize, usize, i32) {
    use std::arch::x86_64::{
        __m256i, _mm256_cmpeq_epi8_mask, _mm256_cmple_epu8_mask, _mm256_loadu_si256,
        _mm256_mask_loadu_epi8, _mm256_movemask_epi8, _mm256_set1_epi8, _mm256_storeu_si256,
        _mm512_cvtepu8_epi16, _mm512_mask_mov_epi16, _mm512_maskz_compress_epi8, _mm512_or_si512,
        _mm512_set1_epi16, _mm512_slli_epi16, _mm512_storeu_si512, _pdep_u64,
    };
    assert!(out.len() >= w + bytes.len() * 6 + 16);
    let mut i = 0;
    let mut high = 0;
    let quote = _mm256_set1_epi8(b'"' as i8);
    let backslash = _mm256_set1_epi8(b'\\' as i8);
    let last_control = _mm256_set1_epi8(0x1f);
    // Writes the escaped form of the 32 bytes of `v` (escapes at `quotes`, no control
    // byte) at `out[w..]`, as one 64-byte store; returns the position after it.
    // SAFETY (of the store): the caller keeps `w + 64 <= out.len()`.
    let spread = |out: &mut [MaybeUninit<u8>], w: usize, v: __m256i, quotes: u32| -> usize {
        let words = _mm512_cvtepu8_epi16(v);
        let escaped = _mm512_or_si512(
            _mm512_slli_epi16(words, 8),
            _mm512_set1_epi16(i16::from(b'\\')),
        );
        let words = _mm512_mask_mov_epi16(words, quotes, escaped);
        // every low byte, and the high byte of each escaped word
        let keep = 0x5555_5555_5555_5555 | _pdep_u64(u64::from(quotes), 0xaaaa_aaaa_aaaa_aaaa);
        let packed = _mm512_maskz_compress_epi8(keep, words);
        // SAFETY: in bounds by the caller.
        unsafe { _mm512_storeu_si512(out.as_mut_ptr().add(w).cast(), packed) };
        w + 32 + quotes.count_ones() as usize
    };
    while i + 32 <= bytes.len() {
        // SAFETY: the load reads `bytes[i..i + 32]`, in bounds by the loop condition.
        // Stores write at most 64 bytes at `out[w..]`, and `w <= w0 + 6 * i` before each
        // block, so they end within `w0 + 6 * i + 64 <= w0 + 6 * bytes.len() + 16` as
        // `i + 8 <= bytes.len()`: the assertion above keeps that within `out`. Bytes
        // stored past the position reached are written again before `w` moves past.
        let v = unsafe { _mm256_loadu_si256(bytes.as_ptr().add(i).cast()) };
        high |= _mm256_movemask_epi8(v);
        let controls = _mm256_cmple_epu8_mask(v, last_control);
        let quotes = _mm256_cmpeq_epi8_mask(v, quote) | _mm256_cmpeq_epi8_mask(v, backslash);
        if controls == 0 {
            // Spread even when no byte needs escaping: a branch on that is mispredicted
            // often in log lines, and costs more than the spread (encode_bench: 0.34 →
            // 0.32 CPU s/GiB, median of 9 alternated runs).
            w = spread(out, w, v, quotes);
            i += 32;
            continue;
        }
        // a control byte: the bytes before the first escape as they are, then that one
        unsafe { _mm256_storeu_si256(out.as_mut_ptr().add(w).cast(), v) };
        let plain = (controls | quotes).trailing_zeros() as usize;
        i += plain;
        w = put_escaped(out, w + plain, bytes[i]);
        i += 1;
    }
    // The last 1..=31 bytes: a masked load (the lanes past the end are not read) padded
    // with `a`s, spread the same way when they hold no control byte and the store fits.
    let rem = bytes.len() - i;
    if rem > 0 && w + 64 <= out.len() {
        let lanes = (1u32 << rem) - 1;
        // SAFETY: only the `rem` lanes of `lanes` are read: `bytes[i..]`.
        let v = unsafe {
            _mm256_mask_loadu_epi8(
                _mm256_set1_epi8(b'a' as i8),
                lanes,
                bytes.as_ptr().add(i).cast(),
            )
        };
        if _mm256_cmple_epu8_mask(v, last_control) == 0 {
            high |= _mm256_movemask_epi8(v);
            let quotes = _mm256_cmpeq_epi8_mask(v, quote) | _mm256_cmpeq_epi8_mask(v, backslash);
            spread(out, w, v, quotes);
            return (w + rem + quotes.count_ones() as usize, bytes.len(), high);
        }
    }
    (w, i, high)
}

/// For each 8-bit mask of the bytes of an 8-byte half that are `"` or `\`: the
/// `pshufb` control that spreads the half into its escaped form (a slot before each
/// such byte), and the bytes of that form where a backslash goes.
#[cfg(target_arch = "x86_64")]
const EXPAND: [([u8; 16], [u8; 16]); 256] = {
    let mut table = [([0x80u8; 16], [0u8; 16]); 256];
    let mut mask = 0;
    while mask < 256 {
        let mut at = 0;
        let mut j = 0;
        while j < 8 {
            if mask >> j & 1 == 1 {
                table[mask].0[at] = j as u8;
                table[mask].1[at] = 0xff;
                at += 1;
            }
            table[mask].0[at] = j as u8;
            at += 1;
            j += 1;
        }
        mask += 1;
    }
    table
};

/// [`escape_into`] on CPUs with SSSE3: sixteen bytes at a time while that many are left,
/// then the rest as one padded block. A block whose only escapes are `"` and `\` (most blocks of JSON
/// log lines have one or more) is escaped without a branch: each half is spread by a
/// shuffle from [`EXPAND`] and the backslashes are blended in. Measured: the loop that
/// stops at each escape mispredicted a branch per `"`, and was the largest cost of the
/// JSON flushers. Returns the output position, the bytes consumed (all of them unless
/// the last ones hold a control byte or the room is short) and the `movemask` of their
/// high bits (non-zero when one was not ASCII).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "ssse3,popcnt")]
fn escape_ssse3(out: &mut [MaybeUninit<u8>], mut w: usize, bytes: &[u8]) -> (usize, usize, i32) {
    use std::arch::x86_64::{
        __m128i, _mm_and_si128, _mm_andnot_si128, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8,
        _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8, _mm_shuffle_epi8, _mm_srli_si128,
        _mm_storeu_si128,
    };
    assert!(out.len() >= w + bytes.len() * 6 + 16);
    let mut i = 0;
    let mut high = 0;
    let quote = _mm_set1_epi8(b'"' as i8);
    let backslash = _mm_set1_epi8(b'\\' as i8);
    let last_control = _mm_set1_epi8(0x1f);
    // Writes the escaped form of the low eight bytes of `half` (escapes at `mask`) at
    // `out[w..]`; returns the position after it.
    // SAFETY (of the store): the caller keeps `w + 16 <= out.len()`.
    let spread = |out: &mut [MaybeUninit<u8>], w: usize, half: __m128i, mask: u32| -> usize {
        let (shuffle, slots) = &EXPAND[mask as usize];
        // SAFETY: both tables are sixteen bytes; the store is in bounds by the caller.
        unsafe {
            let shuffle = _mm_loadu_si128(shuffle.as_ptr().cast());
            let slots = _mm_loadu_si128(slots.as_ptr().cast());
            let spread = _mm_shuffle_epi8(half, shuffle);
            let escaped = _mm_or_si128(
                _mm_andnot_si128(slots, spread),
                _mm_and_si128(slots, backslash),
            );
            _mm_storeu_si128(out.as_mut_ptr().add(w).cast(), escaped);
        }
        w + 8 + mask.count_ones() as usize
    };
    while i + 16 <= bytes.len() {
        // SAFETY: the load reads `bytes[i..i + 16]`, in bounds by the loop condition.
        // Every store writes sixteen bytes at `out[w..]`, and `w <= w0 + 6 * i` holds
        // before each block (at most six bytes out per byte in), so a store after up to
        // eight more bytes of the block ends within `w0 + 6 * (i + 8) + 16`, which is
        // within `w0 + 6 * bytes.len()` as `i + 16 <= bytes.len()`: the assertion
        // above keeps that within `out`. Bytes stored past the position reached are
        // written again before `w` moves past them.
        let v = unsafe { _mm_loadu_si128(bytes.as_ptr().add(i).cast()) };
        high |= _mm_movemask_epi8(v);
        let control = _mm_cmpeq_epi8(_mm_min_epu8(v, last_control), v);
        let controls = _mm_movemask_epi8(control) as u32;
        let quotes = _mm_movemask_epi8(_mm_or_si128(
            _mm_cmpeq_epi8(v, quote),
            _mm_cmpeq_epi8(v, backslash),
        )) as u32;
        if controls == 0 {
            if quotes == 0 {
                unsafe { _mm_storeu_si128(out.as_mut_ptr().add(w).cast(), v) };
                w += 16;
            } else {
                w = spread(out, w, v, quotes & 0xff);
                w = spread(out, w, _mm_srli_si128(v, 8), quotes >> 8);
            }
            i += 16;
            continue;
        }
        // a control byte: the bytes before the first escape as they are, then that one
        unsafe { _mm_storeu_si128(out.as_mut_ptr().add(w).cast(), v) };
        let plain = (controls | quotes).trailing_zeros() as usize;
        i += plain;
        w = put_escaped(out, w + plain, bytes[i]);
        i += 1;
    }
    // The last 1..=15 bytes (every line has some): padded to a block with `a`s, spread
    // the same way when they hold no control byte and two stores fit; the position
    // moves past their escaped form only.
    let rem = bytes.len() - i;
    if rem > 0 && w + 32 <= out.len() {
        let mut block = [b'a'; 16];
        block[..rem].copy_from_slice(&bytes[i..]);
        // SAFETY: `block` is sixteen bytes; the stores below are in bounds by the check
        // `w + 32 <= out.len()` (the first writes `out[w..w + 16]`, the second starts
        // at most eight plus eight bytes later).
        let v = unsafe { _mm_loadu_si128(block.as_ptr().cast()) };
        let control = _mm_cmpeq_epi8(_mm_min_epu8(v, last_control), v);
        if _mm_movemask_epi8(control) == 0 {
            high |= _mm_movemask_epi8(v);
            let quotes = _mm_movemask_epi8(_mm_or_si128(
                _mm_cmpeq_epi8(v, quote),
                _mm_cmpeq_epi8(v, backslash),
            )) as u32;
            let after = spread(out, w, v, quotes & 0xff);
            if rem > 8 {
                spread(out, after, _mm_srli_si128(v, 8), quotes >> 8);
            }
            return (w + rem + quotes.count_ones() as usize, bytes.len(), high);
        }
    }
    (w, i, high)
}

/// Writes `bytes` escaped at `out[w..]` (room for six bytes per byte and sixteen more);
/// returns the position after them and whether every byte was ASCII.
#[cfg(not(target_arch = "x86_64"))]
fn escape_into(out: &mut [MaybeUninit<u8>], w: usize, bytes: &[u8]) -> (usize, bool) {
    escape_words(out, w, bytes)
}

/// [`escape_into`] eight bytes at a time (the tail of the SSE2 path, and the whole of
/// it elsewhere).
fn escape_words(out: &mut [MaybeUninit<u8>], mut w: usize, bytes: &[u8]) -> (usize, bool) {
    let mut high = 0u64;
    let mut words = bytes.chunks_exact(8);
    for chunk in &mut words {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word);
        high |= x;
        let quotes = quote_mask(x);
        if control_mask(x) != 0 {
            // rare: a control byte, escaped byte by byte
            for &b in &word {
                w = put_escaped(out, w, b);
            }
        } else if quotes == 0 {
            for (slot, &b) in out[w..w + 8].iter_mut().zip(&word) {
                slot.write(b);
            }
            w += 8;
        } else {
            // `"` and `\` at unpredictable places: without branches, a backslash is
            // written before every byte and overwritten by the byte unless it escapes.
            for (k, &b) in word.iter().enumerate() {
                let escaped = (quotes >> (k * 8 + 7) & 1) as usize;
                out[w].write(b'\\');
                out[w + escaped].write(b);
                w += 1 + escaped;
            }
        }
    }
    let mut ascii = high & HI == 0;
    for &b in words.remainder() {
        ascii &= b < 0x80;
        w = put_escaped(out, w, b);
    }
    (w, ascii)
}

fn write_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

fn write_i64(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    write_u64(out, v.unsigned_abs());
}

/// `v` as exactly `width` decimal digits (zero-padded; `v` must fit).
fn write_digits(out: &mut Vec<u8>, mut v: u64, width: usize) {
    let mut buf = [b'0'; 20];
    for slot in buf[..width].iter_mut().rev() {
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
    out.extend_from_slice(&buf[..width]);
}

/// Unix nanoseconds as `weir_core::json::format_rfc3339_nanos` formats them (RFC 3339,
/// UTC, nine fraction digits), without the quotes.
pub fn write_rfc3339_nanos(out: &mut Vec<u8>, ns: i64) {
    Encoder::default().timestamp(out, ns);
}

/// `YYYY-MM-DDTHH:MM:SS.` of Unix second `secs` (20 bytes); false (nothing written) for
/// years outside 0..=9999.
fn write_date_time(out: &mut Vec<u8>, secs: i64) -> bool {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400) as u64;
    let (y, m, d) = civil_from_days(days);
    if !(0..=9999).contains(&y) {
        return false;
    }
    write_digits(out, y as u64, 4);
    out.push(b'-');
    write_digits(out, m as u64, 2);
    out.push(b'-');
    write_digits(out, d as u64, 2);
    out.push(b'T');
    write_digits(out, sod / 3600, 2);
    out.push(b':');
    write_digits(out, sod / 60 % 60, 2);
    out.push(b':');
    write_digits(out, sod % 60, 2);
    out.push(b'.');
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_proto::lv2::Log;

    fn serde_form(stream: &str, index: u64, env: &Envelope) -> Vec<u8> {
        serde_json::to_vec(&PeopleJson::numbered(stream, index, env)).unwrap()
    }

    fn log(payload: &[u8], ts: i64, kind: i32) -> Envelope {
        Envelope {
            timestamp: ts,
            source_id: "app \"x\"".into(),
            instance_id: "0".into(),
            message: Some(Body::Log(Log {
                payload: payload.to_vec().into(),
                r#type: kind,
            })),
            ..Default::default()
        }
    }

    #[test]
    fn same_bytes_as_serde() {
        let mut payloads: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"plain ascii line of some length".to_vec(),
            br#"{"level":"info","msg":"quoted \"x\" and back\\slash"}"#.to_vec(),
            "ünïcödé ✓ and emoji 🦀 mixed".as_bytes().to_vec(),
            b"bad utf8 \xff\xfe here".to_vec(),
            b"del \x7f and \x1b[31mansi\x1b[0m".to_vec(),
        ];
        payloads.push((0u8..=127).collect());
        for b in 0u8..0x20 {
            payloads.push(vec![b'a', b, b'b', b'c', b'd', b'e', b'f', b'g', b'h', b]);
        }
        let times = [
            0,
            -1,
            1_700_000_000_123_456_789,
            951_782_400_123_456_789,
            i64::MAX,
            i64::MIN,
            -2_208_988_800_000_000_000,
        ];
        for (i, p) in payloads.iter().enumerate() {
            for &ts in &times {
                for kind in [0, 1, 7] {
                    let env = log(p, ts, kind);
                    let mut fast = Vec::new();
                    write_numbered(&mut fast, "host/h/+/file/a\tb", i as u64 * 1000, &env);
                    assert_eq!(
                        String::from_utf8_lossy(&fast),
                        String::from_utf8_lossy(&serde_form(
                            "host/h/+/file/a\tb",
                            i as u64 * 1000,
                            &env
                        )),
                        "payload {i} ts {ts}"
                    );
                }
            }
        }
    }

    #[test]
    fn an_encoder_reused_across_entries_writes_each_as_serde_does() {
        let mut enc = Encoder::default();
        let mut k = 0u64;
        for stream in ["a/+/x", "b/+/\"quoted\""] {
            enc.start_run(stream);
            for (i, ts) in [
                5,
                5,
                999_999_999,
                999_999_999,
                1_000_000_000,
                1_000_000_001,
                86_400_000_000_000,
            ]
            .into_iter()
            .enumerate()
            {
                let mut env = log(format!("line {i}").as_bytes(), ts, 0);
                if i % 2 == 1 {
                    env.source_id = "other".into();
                    env.instance_id = format!("{i}");
                }
                let mut fast = Vec::new();
                enc.entry(&mut fast, stream, k, &env);
                assert_eq!(
                    String::from_utf8_lossy(&fast),
                    String::from_utf8_lossy(&serde_form(stream, k, &env))
                );
                k += 1;
            }
        }
    }

    #[test]
    fn runs_of_lines_are_written_as_serde_writes_their_envelopes() {
        let mut payloads: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            br#"{"level":"info","msg":"quoted \"x\" and back\\slash"}"#.to_vec(),
            "ünïcödé ✓ and emoji 🦀 mixed".as_bytes().to_vec(),
            b"bad utf8 \xff\xfe here".to_vec(),
            b"del \x7f and \x1b[31mansi\x1b[0m".to_vec(),
            (0u8..=127).collect(),
            vec![b'"'; 40],
        ];
        for b in 0u8..0x20 {
            payloads.push(vec![b'a', b, b'b', b'c', b'd', b'e', b'f', b'g', b'h', b]);
        }
        let sources: [std::sync::Arc<str>; 2] = ["app".into(), "other \"src\"".into()];
        let mut enc = Encoder::default();
        let mut index = 7u64;
        for (run, source) in sources.iter().cycle().take(4).enumerate() {
            let stream = if run % 2 == 0 { "a/+/x" } else { "b/+/\"q\"" };
            let lines = LogLines {
                source_id: source.clone(),
                lines: payloads
                    .iter()
                    .enumerate()
                    .map(|(i, p)| LogLine {
                        payload: p.clone().into(),
                        // runs of lines sharing a timestamp, and seconds changing
                        timestamp: 999_999_990 + (i as i64 / 3) * 5,
                    })
                    .collect(),
            };
            enc.start_run(stream);
            let mut fast = Vec::new();
            enc.lines(&mut fast, stream, index, &lines, &lines.lines);
            let mut want = Vec::new();
            for (k, line) in lines.lines.iter().enumerate() {
                want.extend(serde_form(stream, index + k as u64, &lines.envelope(line)));
                want.push(b'\n');
            }
            assert_eq!(
                String::from_utf8_lossy(&fast),
                String::from_utf8_lossy(&want),
                "run {run}"
            );
            index += lines.lines.len() as u64;
        }
    }

    #[test]
    fn other_entries_go_through_serde() {
        let mut env = log(b"x", 5, 0);
        env.tags.insert("k".into(), "v".into());
        let mut fast = Vec::new();
        write_numbered(&mut fast, "s/+/t", 1, &env);
        assert_eq!(fast, serde_form("s/+/t", 1, &env));
    }

    #[test]
    fn escape_mask_is_exact_per_byte() {
        let want = |b: u8| b < 0x20 || b == b'"' || b == b'\\';
        for b in 0u8..=255 {
            for other in [b'a', b'"', 0x00, 0x1f, 0x20, 0x7f, 0x80, 0xff] {
                for pos in 0..8 {
                    let mut w = [other; 8];
                    w[pos] = b;
                    let mask = escape_mask(u64::from_le_bytes(w));
                    for (k, &byte) in w.iter().enumerate() {
                        assert_eq!(
                            mask >> (k * 8 + 7) & 1 == 1,
                            want(byte),
                            "byte {byte:#x} at {k} in {w:x?}"
                        );
                    }
                    assert_eq!(mask & !HI, 0);
                }
            }
        }
    }

    #[test]
    fn long_lines_with_sparse_escapes_and_non_ascii_escape_as_serde_does() {
        const ALPHABET: &[&str] = &[
            "abcdefgh",
            "0123456789",
            "\"",
            "\\",
            "\n",
            "é",
            "🦀",
            "\u{1}",
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for len in [15, 16, 17, 31, 32, 33, 100, 500] {
            for _ in 0..200 {
                let mut line = String::new();
                while line.len() < len {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    // plain text most of the time, like log lines
                    let pick = (seed % 40) as usize;
                    line.push_str(ALPHABET[if pick < 32 { pick % 2 } else { pick - 32 }]);
                }
                let mut fast = Vec::new();
                let ascii = write_escaped(&mut fast, line.as_bytes());
                assert_eq!(fast, serde_json::to_vec(&line).unwrap(), "{line:?}");
                assert_eq!(ascii, line.is_ascii(), "{line:?}");
            }
        }
    }

    /// A position below `n`, from an xorshift generator (tests repeat exactly).
    fn pick(seed: &mut u64, n: usize) -> usize {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        (*seed % n as u64) as usize
    }

    #[cfg(target_arch = "x86_64")]
    fn escaped_with(text: &str, level: X86Level) -> Vec<u8> {
        let bytes = text.as_bytes();
        let mut out = vec![MaybeUninit::new(0u8); bytes.len() * 6 + 16];
        let (w, ascii) = escape_x86(&mut out, 0, bytes, level);
        assert_eq!(ascii, text.is_ascii(), "{text:?}");
        out[..w]
            .iter()
            .map(|b| unsafe { b.assume_init() })
            .collect()
    }

    /// Every x86_64 path the CPU has (SSE2 alone, SSSE3, AVX-512) against serde, on
    /// text dense in `"` and `\` without control bytes (the branch-free blocks of the
    /// SSSE3 and AVX-512 parts) and on text with control bytes too.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn every_x86_path_escapes_as_serde_does() {
        let alphabets: [&[char]; 2] = [
            &['a', '"', '\\', ' ', '~', '\u{7f}', 'é', '"', '"'],
            &['a', '"', '\\', '\n', '\u{1}', '\u{1f}', 'ü'],
        ];
        let paths: Vec<X86Level> = [X86Level::Sse2, X86Level::Ssse3, X86Level::Avx512]
            .into_iter()
            .filter(|l| *l <= X86Level::detected())
            .collect();
        if paths.len() < 3 {
            eprintln!("this CPU runs only the escaping paths {paths:?}");
        }
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for alphabet in alphabets {
            for len in 0..120 {
                for _ in 0..20 {
                    let text: String = (0..len)
                        .map(|_| alphabet[pick(&mut seed, alphabet.len())])
                        .collect();
                    let want = serde_json::to_vec(&text).unwrap();
                    for &level in &paths {
                        let got = escaped_with(&text, level);
                        assert_eq!(
                            String::from_utf8_lossy(&got),
                            String::from_utf8_lossy(&want[1..want.len() - 1]),
                            "{level:?}: {text:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn random_bytes_escape_as_serde_does() {
        // Dense in the bytes that need escaping, so that words hold several of them.
        const ALPHABET: &[u8] = b"ab\"\\\n\t\x01\x1f ~\x7f";
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for len in 0..200 {
            for _ in 0..20 {
                let line: String = (0..len)
                    .map(|_| ALPHABET[pick(&mut seed, ALPHABET.len())] as char)
                    .collect();
                let mut fast = Vec::new();
                write_str(&mut fast, &line);
                assert_eq!(fast, serde_json::to_vec(&line).unwrap(), "{line:?}");
            }
        }
    }
}
