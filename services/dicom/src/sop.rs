//! SOP classes the service takes in, and the transfer syntaxes it accepts.

use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

pub const VERIFICATION: &str = "1.2.840.10008.1.1";
pub const CT_IMAGE_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.2";
pub const ENHANCED_CT_IMAGE_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.2.1";
pub const SEGMENTATION_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.66.4";
pub const ENCAPSULATED_STL_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.104.3";
pub const COMPREHENSIVE_SR_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.88.33";

/// Storage SOP classes accepted by the listener: CT to segment, and SEG for
/// corrections resubmitted by radiologists.
pub const STORAGE_CLASSES: [&str; 3] = [
    CT_IMAGE_STORAGE,
    ENHANCED_CT_IMAGE_STORAGE,
    SEGMENTATION_STORAGE,
];

pub const IMPLICIT_VR_LE: &str = "1.2.840.10008.1.2";
pub const EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1";

/// Objects derived from images: kept and served, never segmented.
pub fn is_derived(uid: &str) -> bool {
    matches!(
        uid,
        SEGMENTATION_STORAGE | ENCAPSULATED_STL_STORAGE | COMPREHENSIVE_SR_STORAGE
    )
}

pub fn is_storage_class(uid: &str) -> bool {
    STORAGE_CLASSES.contains(&uid)
}

/// Transfer syntaxes whose data sets *and* pixel data this build can
/// decode, in the registry's order. Encapsulated syntaxes appear only when
/// their codec is compiled in (feature `codecs`): accepting bytes we could
/// never decode would only move the failure to the worker.
pub fn decodable_transfer_syntaxes() -> Vec<String> {
    let mut uids: Vec<String> = TransferSyntaxRegistry
        .iter()
        .filter(|ts| ts.can_decode_all())
        .map(|ts| ts.uid().trim_end_matches('\0').to_string())
        .collect();
    uids.sort();
    uids.dedup();
    uids
}

/// Name of a transfer syntax for messages, or the UID when unknown.
pub fn transfer_syntax_name(uid: &str) -> String {
    TransferSyntaxRegistry
        .get(uid)
        .map(|ts| ts.name().to_string())
        .unwrap_or_else(|| uid.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codecs_build_decodes_the_transfer_syntaxes_we_promise() {
        let got = decodable_transfer_syntaxes();
        let want = [
            ("1.2.840.10008.1.2", "implicit VR LE"),
            ("1.2.840.10008.1.2.1", "explicit VR LE"),
            ("1.2.840.10008.1.2.1.99", "deflated explicit VR LE"),
            ("1.2.840.10008.1.2.5", "RLE lossless"),
            ("1.2.840.10008.1.2.4.50", "JPEG baseline"),
            ("1.2.840.10008.1.2.4.57", "JPEG lossless"),
            ("1.2.840.10008.1.2.4.70", "JPEG lossless SV1"),
            ("1.2.840.10008.1.2.4.90", "JPEG 2000 lossless"),
            ("1.2.840.10008.1.2.4.91", "JPEG 2000"),
            ("1.2.840.10008.1.2.4.80", "JPEG-LS lossless"),
            ("1.2.840.10008.1.2.4.81", "JPEG-LS near-lossless"),
        ];
        for (uid, name) in want {
            assert!(
                got.iter().any(|u| u == uid),
                "{name} ({uid}) missing from {got:?}"
            );
        }
    }
}
