//! UID hygiene. Values arrive padded (`\0` or space) and sometimes invalid;
//! they also become file names, so they are checked before use.

/// Strips the padding DICOM allows at the end of a UI value.
pub fn trim(uid: &str) -> &str {
    uid.trim_end_matches(['\0', ' ']).trim_start()
}

/// True for a UID usable as an identifier and as a file name: 1 to 64
/// characters of digits and dots, no empty component. Leading zeros are
/// tolerated (real data has them).
pub fn is_valid(uid: &str) -> bool {
    !uid.is_empty()
        && uid.len() <= 64
        && uid
            .split('.')
            .all(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_and_validates() {
        assert_eq!(trim("1.2.840\0"), "1.2.840");
        assert_eq!(trim("1.2 "), "1.2");
        assert!(is_valid("1.2.840.10008.5.1.4.1.1.2"));
        assert!(!is_valid(""));
        assert!(!is_valid("1..2"));
        assert!(!is_valid("1.2.abc"));
        assert!(!is_valid("../../etc"));
        assert!(!is_valid(&"1.".repeat(40)));
    }
}
