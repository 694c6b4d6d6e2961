//! A walk over the encoded elements of a data set that checks its
//! structure before dicom-rs builds objects from it.
//!
//! dicom-rs reads nested sequences by recursion and allocates each value at
//! its declared length. Left to itself, a few KB of nested sequences
//! overflow a thread's stack (and abort the whole process, every role in
//! it), and a single length field can ask for 4 GiB. This walk follows the
//! same encoding rules as dicom-rs's reader, allocates nothing per element,
//! and refuses a data set whose sequences nest deeper than [`MAX_DEPTH`],
//! whose declared lengths run past the bytes that are there (or past the
//! item or sequence that holds them), or that ends inside an element or an
//! open sequence. On the way it notes what the pixel data is, so that a
//! receiver can refuse an image whose pixels are missing or cut short
//! ([`Shape::check_image`]) instead of failing later in the worker.
//!
//! Every door that takes bytes from outside runs it first: DIMSE command
//! sets ([`crate::dimse`]), received instances ([`crate::instance`]) and
//! resubmitted segmentations ([`crate::repair`]).

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::StandardDataDictionary;
use dicom_encoding::{Codec, Endianness, TransferSyntaxIndex};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use std::io::Read;
use std::path::Path;

/// How deep sequences may nest. Real objects stay far below it (enhanced
/// multi-frame functional groups and SEG segment descriptions nest 3 to 4
/// deep, SR content trees rarely beyond 10); dicom-rs overflows a 2 MiB
/// stack somewhere past 200.
pub const MAX_DEPTH: usize = 32;

/// The longest value in a file meta group that is read (UIDs, AE titles,
/// implementation names are all short; 64 KiB leaves room for private ones).
const MAX_META_VALUE: u32 = 64 << 10;

const UNDEFINED: u32 = 0xFFFF_FFFF;
const ITEM: Tag = Tag(0xFFFE, 0xE000);
const ITEM_END: Tag = Tag(0xFFFE, 0xE00D);
const SEQUENCE_END: Tag = Tag(0xFFFE, 0xE0DD);
const PIXEL_DATA: Tag = Tag(0x7FE0, 0x0010);
const FLOAT_PIXEL_DATA: Tag = Tag(0x7FE0, 0x0008);
const DOUBLE_FLOAT_PIXEL_DATA: Tag = Tag(0x7FE0, 0x0009);

#[derive(Debug, thiserror::Error)]
pub enum StructureError {
    #[error("sequences nest deeper than {limit} levels (at byte {offset})")]
    TooDeep { limit: usize, offset: u64 },
    #[error(
        "element {tag} at byte {offset} declares {length} bytes, but only {available} remain in {within}"
    )]
    Overrun {
        tag: String,
        offset: u64,
        length: u64,
        available: u64,
        within: &'static str,
    },
    #[error("the data ends at byte {offset}, inside {what}")]
    Truncated { offset: u64, what: &'static str },
    #[error("unexpected {tag} at byte {offset} {context}")]
    Unexpected {
        tag: String,
        offset: u64,
        context: &'static str,
    },
    #[error(
        "element {tag} at byte {offset} has an undefined length, which only sequences and encapsulated pixel data may have"
    )]
    UndefinedLength { tag: String, offset: u64 },
    #[error("not a Part 10 file: {0}")]
    NotPart10(&'static str),
    #[error("file meta information: {0}")]
    Meta(String),
    #[error("the data set is larger than {limit} bytes once inflated")]
    TooLarge { limit: u64 },
    #[error("{0}")]
    Image(String),
    #[error("reading: {0}")]
    Io(#[source] std::io::Error),
}

/// How the elements of a data set are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoding {
    pub explicit_vr: bool,
    pub big_endian: bool,
    /// The data set is deflated (PS3.5 A.5).
    pub deflated: bool,
    /// The transfer syntax carries pixel data in fragments.
    pub encapsulated: bool,
}

impl Encoding {
    /// Implicit VR Little Endian: DIMSE command sets and the default.
    pub const IMPLICIT_LE: Encoding = Encoding {
        explicit_vr: false,
        big_endian: false,
        deflated: false,
        encapsulated: false,
    };

    /// The encoding of a transfer syntax; `None` when it is unknown here.
    pub fn of(transfer_syntax: &str) -> Option<Encoding> {
        let uid = transfer_syntax.trim_end_matches(['\0', ' ']);
        let ts = TransferSyntaxRegistry.get(uid)?;
        // Implicit VR Little Endian (and its Papyrus twin) are the only
        // implicit ones; the registry does not say so itself.
        let implicit = matches!(uid, "1.2.840.10008.1.2" | "1.2.840.10008.1.20");
        Some(Encoding {
            explicit_vr: !implicit,
            big_endian: ts.endianness() == Endianness::Big,
            deflated: matches!(ts.codec(), Codec::Dataset(_)),
            encapsulated: ts.is_encapsulated_pixel_data(),
        })
    }
}

/// What the pixel data of the top-level data set is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelData {
    /// A value of this many bytes.
    Native { length: u64 },
    /// Fragments (the first is the basic offset table) and their bytes.
    Encapsulated { fragments: u32, bytes: u64 },
}

/// What the walk learned of the top-level data set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shape {
    pub rows: Option<u16>,
    pub columns: Option<u16>,
    pub bits_allocated: Option<u16>,
    pub samples_per_pixel: Option<u16>,
    pub number_of_frames: Option<u32>,
    pub pixel_data: Option<PixelData>,
    /// The deepest sequence nesting seen.
    pub depth: usize,
}

/// What [`check_part10`] found: the data set's shape and the transfer
/// syntax the file meta names (`shape` is `None` when that syntax is
/// unknown here: dicom-rs refuses such files on its own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part10 {
    pub transfer_syntax: String,
    pub shape: Option<Shape>,
}

/// Checks a data set held in memory.
pub fn check_data_set(bytes: &[u8], encoding: Encoding) -> Result<Shape, StructureError> {
    check_stream(bytes, Some(bytes.len() as u64), encoding, u64::MAX)
}

/// Checks a data set read from `source`. `length` is how many bytes it
/// holds when known (a file, a buffer); deflated data sets are inflated as
/// they are walked and refused past `max_bytes`.
pub fn check_stream<R: Read>(
    source: R,
    length: Option<u64>,
    encoding: Encoding,
    max_bytes: u64,
) -> Result<Shape, StructureError> {
    if encoding.deflated {
        let inflated = flate2::read::DeflateDecoder::new(source);
        let plain = Encoding {
            deflated: false,
            ..encoding
        };
        return Walk::new(Input::new(inflated, None, max_bytes), plain).run();
    }
    Walk::new(Input::new(source, length, max_bytes), encoding).run()
}

/// Checks a Part 10 object in memory: preamble (optional), file meta
/// group as dicom-rs reads it, then the data set.
pub fn check_part10(bytes: &[u8], max_bytes: u64) -> Result<Part10, StructureError> {
    check_part10_stream(bytes, bytes.len() as u64, max_bytes)
}

/// [`check_part10`] on a file, read sequentially in 64 KiB blocks.
pub fn check_part10_file(path: &Path, max_bytes: u64) -> Result<Part10, StructureError> {
    let file = std::fs::File::open(path).map_err(StructureError::Io)?;
    let length = file.metadata().map_err(StructureError::Io)?.len();
    check_part10_stream(
        std::io::BufReader::with_capacity(64 << 10, file),
        length,
        max_bytes,
    )
}

fn check_part10_stream<R: Read>(
    source: R,
    length: u64,
    max_bytes: u64,
) -> Result<Part10, StructureError> {
    let mut input = Input::new(source, Some(length), max_bytes);
    let mut head = [0u8; 132];
    let have = input.read_up_to(&mut head)?;
    if have >= 132 && &head[128..132] == b"DICM" {
        // preamble and magic: the meta group follows
    } else if have >= 4 && &head[..4] == b"DICM" {
        input.unread(&head[4..have]);
    } else {
        return Err(StructureError::NotPart10("no DICM magic code"));
    }
    let transfer_syntax = read_meta(&mut input)?;
    let Some(encoding) = Encoding::of(&transfer_syntax) else {
        return Ok(Part10 {
            transfer_syntax,
            shape: None,
        });
    };
    let shape = if encoding.deflated {
        let rest = input.into_rest();
        check_stream(rest, None, encoding, max_bytes)?
    } else {
        Walk::new(input, encoding).run()?
    };
    Ok(Part10 {
        transfer_syntax,
        shape: Some(shape),
    })
}

/// Reads the file meta group the way dicom-rs does (its group length
/// first, then elements until that many bytes are consumed) and returns
/// the transfer syntax UID it names.
fn read_meta<R: Read>(input: &mut Input<R>) -> Result<String, StructureError> {
    let meta = |m: &str| StructureError::Meta(m.to_string());
    let mut header = [0u8; 12];
    if input.read_up_to(&mut header)? < 12 {
        return Err(meta("it ends before its group length"));
    }
    if header[..4] != [0x02, 0x00, 0x00, 0x00] || &header[4..6] != b"UL" || header[6..8] != [4, 0] {
        return Err(meta("it does not start with (0002,0000) UL of 4 bytes"));
    }
    let group_length = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
    let mut consumed: u64 = 0;
    let mut transfer_syntax = None;
    while consumed < u64::from(group_length) {
        let offset = input.pos;
        let tag = input
            .tag(false)?
            .ok_or_else(|| meta("it ends before its group length says"))?;
        let (length, header_bytes) = if tag.0 == 0xFFFE {
            (input.u32(false)?, 8)
        } else {
            let mut vr = [0u8; 2];
            input.exact(&mut vr, "a meta element header")?;
            let vr = VR::from_binary(vr).unwrap_or(VR::UN);
            if has_short_length(vr) {
                (u32::from(input.u16(false)?), 8)
            } else {
                input.skip(2, "a meta element header")?;
                (input.u32(false)?, 12)
            }
        };
        if length == UNDEFINED || length > MAX_META_VALUE {
            return Err(StructureError::Meta(format!(
                "element {} at byte {offset} declares {length} bytes",
                tag_name(tag)
            )));
        }
        input.fits(tag, offset, u64::from(length), None)?;
        if tag == Tag(0x0002, 0x0010) {
            let mut value = vec![0u8; length as usize];
            input.exact(&mut value, "the transfer syntax UID")?;
            transfer_syntax = Some(
                String::from_utf8_lossy(&value)
                    .trim_end_matches(['\0', ' '])
                    .to_string(),
            );
        } else {
            input.skip(u64::from(length), "a meta element")?;
        }
        consumed += header_bytes + u64::from(length);
    }
    transfer_syntax.ok_or_else(|| meta("it names no transfer syntax"))
}

/// VRs whose explicit length field is 16 bits (PS3.5 table 7.1-2), as
/// dicom-rs decodes them (an unknown VR is read as UN).
fn has_short_length(vr: VR) -> bool {
    matches!(
        vr,
        VR::AE
            | VR::AS
            | VR::AT
            | VR::CS
            | VR::DA
            | VR::DS
            | VR::DT
            | VR::FL
            | VR::FD
            | VR::IS
            | VR::LO
            | VR::LT
            | VR::PN
            | VR::SH
            | VR::SL
            | VR::SS
            | VR::ST
            | VR::TM
            | VR::UI
            | VR::UL
            | VR::US
    )
}

/// Whether an explicit VR (its two bytes) is followed by a 32-bit length
/// (PS3.5 7.1.2), as dicom-rs reads it: an unknown VR is read as UN.
pub fn has_long_length(vr: &[u8]) -> bool {
    let vr = <[u8; 2]>::try_from(vr)
        .ok()
        .and_then(VR::from_binary)
        .unwrap_or(VR::UN);
    !has_short_length(vr)
}

/// The size of one value of a binary VR (1 for text and bytes).
fn binary_size(vr: VR) -> u32 {
    match vr {
        VR::US | VR::SS | VR::OW => 2,
        VR::UL | VR::SL | VR::FL | VR::AT | VR::OF | VR::OL => 4,
        VR::FD | VR::OD | VR::OV | VR::SV | VR::UV => 8,
        _ => 1,
    }
}

fn tag_name(tag: Tag) -> String {
    format!("({:04X},{:04X})", tag.0, tag.1)
}

/// A byte source that counts its position, can give a few bytes back, and
/// knows how many bytes it holds when that is known.
struct Input<R> {
    inner: R,
    back: Vec<u8>,
    pos: u64,
    length: Option<u64>,
    max_bytes: u64,
}

impl<R: Read> Input<R> {
    fn new(inner: R, length: Option<u64>, max_bytes: u64) -> Self {
        Input {
            inner,
            back: Vec::new(),
            pos: 0,
            length,
            max_bytes,
        }
    }

    /// Gives back bytes just read (once, before anything else is read).
    fn unread(&mut self, bytes: &[u8]) {
        debug_assert!(self.back.is_empty());
        self.back = bytes.iter().rev().copied().collect();
        self.pos -= bytes.len() as u64;
    }

    /// The unread bytes and the rest of the source, as one reader.
    fn into_rest(mut self) -> impl Read {
        self.back.reverse();
        std::io::Cursor::new(self.back).chain(self.inner)
    }

    fn read_up_to(&mut self, buf: &mut [u8]) -> Result<usize, StructureError> {
        let mut n = 0;
        while n < buf.len() {
            if let Some(b) = self.back.pop() {
                buf[n] = b;
                n += 1;
                continue;
            }
            match self.inner.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(StructureError::Io(e)),
            }
        }
        self.pos += n as u64;
        if self.pos > self.max_bytes {
            return Err(StructureError::TooLarge {
                limit: self.max_bytes,
            });
        }
        Ok(n)
    }

    fn exact(&mut self, buf: &mut [u8], what: &'static str) -> Result<(), StructureError> {
        if self.read_up_to(buf)? < buf.len() {
            return Err(StructureError::Truncated {
                offset: self.pos,
                what,
            });
        }
        Ok(())
    }

    fn skip(&mut self, mut n: u64, what: &'static str) -> Result<(), StructureError> {
        let mut block = [0u8; 8192];
        while n > 0 {
            let want = n.min(block.len() as u64) as usize;
            let got = self.read_up_to(&mut block[..want])?;
            if got == 0 {
                return Err(StructureError::Truncated {
                    offset: self.pos,
                    what,
                });
            }
            n -= got as u64;
        }
        Ok(())
    }

    /// The next tag, or `None` at a clean end of the data.
    fn tag(&mut self, big_endian: bool) -> Result<Option<Tag>, StructureError> {
        let mut b = [0u8; 4];
        match self.read_up_to(&mut b)? {
            0 => Ok(None),
            4 => Ok(Some(if big_endian {
                Tag(
                    u16::from_be_bytes([b[0], b[1]]),
                    u16::from_be_bytes([b[2], b[3]]),
                )
            } else {
                Tag(
                    u16::from_le_bytes([b[0], b[1]]),
                    u16::from_le_bytes([b[2], b[3]]),
                )
            })),
            _ => Err(StructureError::Truncated {
                offset: self.pos,
                what: "an element tag",
            }),
        }
    }

    fn u16(&mut self, big_endian: bool) -> Result<u16, StructureError> {
        let mut b = [0u8; 2];
        self.exact(&mut b, "an element header")?;
        Ok(if big_endian {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        })
    }

    fn u32(&mut self, big_endian: bool) -> Result<u32, StructureError> {
        let mut b = [0u8; 4];
        self.exact(&mut b, "an element header")?;
        Ok(if big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    }

    /// Refuses a value of `length` bytes that would run past `end` (the
    /// innermost item or sequence of defined length) or past the data.
    fn fits(
        &self,
        tag: Tag,
        offset: u64,
        length: u64,
        end: Option<u64>,
    ) -> Result<(), StructureError> {
        let (limit, within) = match (end, self.length) {
            (Some(e), Some(l)) if e <= l => (Some(e), "its item or sequence"),
            (Some(e), None) => (Some(e), "its item or sequence"),
            (_, Some(l)) => (Some(l), "the data"),
            (None, None) => (None, "the data"),
        };
        match limit {
            Some(limit) if self.pos.saturating_add(length) > limit => {
                Err(StructureError::Overrun {
                    tag: tag_name(tag),
                    offset,
                    length,
                    available: limit.saturating_sub(self.pos),
                    within,
                })
            }
            _ => Ok(()),
        }
    }

    fn at_end(&self) -> bool {
        self.back.is_empty() && self.length.is_some_and(|l| self.pos >= l)
    }
}

/// An open container while walking.
#[derive(Debug, Clone, Copy)]
enum Open {
    /// A sequence: items follow. `end` when its length is defined.
    Sequence { end: Option<u64> },
    /// An item of a sequence: a nested data set.
    Item { end: Option<u64> },
    /// Encapsulated pixel data: fragments follow.
    Fragments,
}

struct Walk<R> {
    input: Input<R>,
    encoding: Encoding,
    stack: Vec<Open>,
    sequences: usize,
    shape: Shape,
}

impl<R: Read> Walk<R> {
    fn new(input: Input<R>, encoding: Encoding) -> Self {
        Walk {
            input,
            encoding,
            stack: Vec::new(),
            sequences: 0,
            shape: Shape::default(),
        }
    }

    /// The end of the innermost container of defined length.
    fn end(&self) -> Option<u64> {
        self.stack.iter().rev().find_map(|o| match o {
            Open::Sequence { end } | Open::Item { end } => *end,
            Open::Fragments => None,
        })
    }

    fn pop(&mut self) {
        if let Some(Open::Sequence { .. } | Open::Fragments) = self.stack.pop() {
            self.sequences -= 1;
        }
    }

    fn push_sequence(&mut self, open: Open, offset: u64) -> Result<(), StructureError> {
        if self.sequences >= MAX_DEPTH {
            return Err(StructureError::TooDeep {
                limit: MAX_DEPTH,
                offset,
            });
        }
        self.sequences += 1;
        self.shape.depth = self.shape.depth.max(self.sequences);
        self.stack.push(open);
        Ok(())
    }

    fn run(mut self) -> Result<Shape, StructureError> {
        let be = self.encoding.big_endian;
        loop {
            // Close the containers of defined length that end here.
            while let Some(Open::Sequence { end: Some(e) } | Open::Item { end: Some(e) }) =
                self.stack.last().copied()
            {
                if self.input.pos < e {
                    break;
                }
                if self.input.pos > e {
                    return Err(StructureError::Unexpected {
                        tag: "element".into(),
                        offset: self.input.pos,
                        context: "running past the end of its item or sequence",
                    });
                }
                self.pop();
            }
            let offset = self.input.pos;
            let Some(tag) = (if self.input.at_end() {
                None
            } else {
                self.input.tag(be)?
            }) else {
                return match self.stack.last() {
                    None => Ok(self.shape),
                    // dicom-rs, too, takes the end of the data as the end
                    // of unterminated pixel data fragments.
                    Some(Open::Fragments) if self.stack.len() == 1 => Ok(self.shape),
                    Some(_) => Err(StructureError::Truncated {
                        offset,
                        what: "a sequence that is never closed",
                    }),
                };
            };
            match self.stack.last().copied() {
                Some(Open::Sequence { .. }) => self.in_sequence(tag, offset)?,
                Some(Open::Fragments) => self.in_fragments(tag, offset)?,
                Some(Open::Item { end }) => self.in_data_set(tag, offset, Some(end))?,
                None => self.in_data_set(tag, offset, None)?,
            }
        }
    }

    fn in_sequence(&mut self, tag: Tag, offset: u64) -> Result<(), StructureError> {
        let length = self.input.u32(self.encoding.big_endian)?;
        match tag {
            ITEM if length == UNDEFINED => self.stack.push(Open::Item { end: None }),
            ITEM => {
                self.input
                    .fits(tag, offset, u64::from(length), self.end())?;
                let end = self.input.pos + u64::from(length);
                self.stack.push(Open::Item { end: Some(end) });
            }
            SEQUENCE_END => self.pop(),
            _ => {
                return Err(StructureError::Unexpected {
                    tag: tag_name(tag),
                    offset,
                    context: "where a sequence item was expected",
                });
            }
        }
        Ok(())
    }

    fn in_fragments(&mut self, tag: Tag, offset: u64) -> Result<(), StructureError> {
        let length = self.input.u32(self.encoding.big_endian)?;
        match tag {
            ITEM if length != UNDEFINED => {
                self.input
                    .fits(tag, offset, u64::from(length), self.end())?;
                self.input
                    .skip(u64::from(length), "a pixel data fragment")?;
                if self.stack.len() == 1
                    && let Some(PixelData::Encapsulated { fragments, bytes }) =
                        &mut self.shape.pixel_data
                {
                    *fragments += 1;
                    *bytes += u64::from(length);
                }
            }
            SEQUENCE_END => self.pop(),
            _ => {
                return Err(StructureError::Unexpected {
                    tag: tag_name(tag),
                    offset,
                    context: "where a pixel data fragment was expected",
                });
            }
        }
        Ok(())
    }

    /// An element of the top-level data set (`item` is `None`) or of an
    /// item (`Some(end)`).
    fn in_data_set(
        &mut self,
        tag: Tag,
        offset: u64,
        item: Option<Option<u64>>,
    ) -> Result<(), StructureError> {
        let be = self.encoding.big_endian;
        if tag.0 == 0xFFFE {
            let length = self.input.u32(be)?;
            return match (tag, item) {
                // dicom-rs ignores a stray item delimiter at the top level.
                (ITEM_END, None) => Ok(()),
                (ITEM_END, Some(None)) => {
                    self.stack.pop();
                    Ok(())
                }
                _ => Err(StructureError::Unexpected {
                    tag: format!("{} (length {length})", tag_name(tag)),
                    offset,
                    context: "inside a data set",
                }),
            };
        }
        let (vr, length) = if self.encoding.explicit_vr {
            let mut vr = [0u8; 2];
            self.input.exact(&mut vr, "an element header")?;
            let vr = VR::from_binary(vr).unwrap_or(VR::UN);
            if has_short_length(vr) {
                (vr, u32::from(self.input.u16(be)?))
            } else {
                self.input.skip(2, "an element header")?;
                (vr, self.input.u32(be)?)
            }
        } else {
            let length = self.input.u32(be)?;
            let vr = if tag == PIXEL_DATA {
                VR::OW
            } else {
                StandardDataDictionary
                    .by_tag(tag)
                    .map(|e| e.vr().relaxed())
                    .unwrap_or(VR::UN)
            };
            (vr, length)
        };
        let top = item.is_none();
        if vr == VR::SQ {
            let end = if length == UNDEFINED {
                None
            } else {
                self.input
                    .fits(tag, offset, u64::from(length), self.end())?;
                Some(self.input.pos + u64::from(length))
            };
            return self.push_sequence(Open::Sequence { end }, offset);
        }
        if length == UNDEFINED {
            if tag == PIXEL_DATA {
                if top {
                    self.shape.pixel_data = Some(PixelData::Encapsulated {
                        fragments: 0,
                        bytes: 0,
                    });
                }
                return self.push_sequence(Open::Fragments, offset);
            }
            // dicom-rs reads any other element of undefined length as a
            // sequence (UN sequences of implicit VR objects, typically).
            return self.push_sequence(Open::Sequence { end: None }, offset);
        }
        let length64 = u64::from(length);
        self.input.fits(tag, offset, length64, self.end())?;
        // dicom-rs reads binary values a number at a time: a length that
        // is not a whole number of them leaves it out of step with the
        // elements that follow (and reading lengths from inside values).
        let size = binary_size(vr);
        if length % size != 0 {
            return Err(StructureError::Unexpected {
                tag: format!("{} {vr:?} of {length} bytes", tag_name(tag)),
                offset,
                context: "(not a whole number of values)",
            });
        }
        if top {
            match tag {
                PIXEL_DATA | FLOAT_PIXEL_DATA | DOUBLE_FLOAT_PIXEL_DATA => {
                    self.shape.pixel_data = Some(PixelData::Native { length: length64 });
                }
                Tag(0x0028, 0x0010)
                | Tag(0x0028, 0x0011)
                | Tag(0x0028, 0x0100)
                | Tag(0x0028, 0x0002)
                    if length == 2 =>
                {
                    let v = Some(self.input.u16(be)?);
                    match tag.1 {
                        0x0010 => self.shape.rows = v,
                        0x0011 => self.shape.columns = v,
                        0x0100 => self.shape.bits_allocated = v,
                        _ => self.shape.samples_per_pixel = v,
                    }
                    return Ok(());
                }
                Tag(0x0028, 0x0008) if length <= 16 => {
                    let mut v = [0u8; 16];
                    let v = &mut v[..length as usize];
                    self.input.exact(v, "Number of Frames")?;
                    self.shape.number_of_frames = std::str::from_utf8(v)
                        .ok()
                        .and_then(|s| s.trim_matches(['\0', ' ']).parse().ok());
                    return Ok(());
                }
                _ => {}
            }
        }
        self.input.skip(length64, "an element value")
    }
}

impl Shape {
    /// Refuses an image of `sop_class` whose pixel data is missing, of
    /// the wrong kind for `encoding`, or shorter than its rows, columns,
    /// frames and bits need. Classes other than CT, Enhanced CT and
    /// Segmentation are not checked.
    pub fn check_image(&self, sop_class: &str, encoding: Encoding) -> Result<(), StructureError> {
        use crate::sop::{CT_IMAGE_STORAGE, ENHANCED_CT_IMAGE_STORAGE, SEGMENTATION_STORAGE};
        let image = |m: String| Err(StructureError::Image(m));
        let ct = matches!(sop_class, CT_IMAGE_STORAGE | ENHANCED_CT_IMAGE_STORAGE);
        if !ct && sop_class != SEGMENTATION_STORAGE {
            return Ok(());
        }
        let Some(pixel_data) = self.pixel_data else {
            return image("has no pixel data".into());
        };
        let (Some(rows), Some(columns)) = (self.rows, self.columns) else {
            return image("lacks Rows or Columns".into());
        };
        if rows == 0 || columns == 0 {
            return image(format!("has a {rows} x {columns} matrix"));
        }
        let bits = self.bits_allocated.unwrap_or(0);
        // CT is 16 bits by the standard; 8-bit CT-class masks exist in the
        // wild (IRCADb's), so only what no CT image can be is refused.
        if ct && !matches!(bits, 8 | 16 | 32) {
            return image(format!(
                "has {bits} bits allocated, which no CT image has (8, 16 or 32)"
            ));
        }
        if !ct && bits != 1 && bits != 8 {
            return image(format!(
                "has {bits} bits allocated, which no Segmentation has (1 or 8)"
            ));
        }
        let frames = self.number_of_frames.unwrap_or(1);
        if frames == 0 {
            return image("has 0 frames".into());
        }
        match pixel_data {
            PixelData::Native { length } => {
                if encoding.encapsulated {
                    return image("has plain pixel data where its transfer syntax needs fragments (encapsulated)".into());
                }
                let samples = u128::from(self.samples_per_pixel.unwrap_or(1).max(1));
                let needed = (u128::from(rows)
                    * u128::from(columns)
                    * u128::from(frames)
                    * samples
                    * u128::from(bits))
                .div_ceil(8);
                if u128::from(length) < needed {
                    return image(format!(
                        "has {length} bytes of pixel data; {rows} x {columns} x {frames} frame(s) at {bits} bits need {needed}"
                    ));
                }
            }
            PixelData::Encapsulated { fragments, bytes } => {
                if !encoding.encapsulated {
                    return image(
                        "has encapsulated pixel data where its transfer syntax has none".into(),
                    );
                }
                // The first item is the basic offset table.
                if fragments < 2 || bytes == 0 {
                    return image("has encapsulated pixel data without fragments".into());
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
