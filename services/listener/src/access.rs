//! Association access control: the called AE title must be ours, and the
//! calling AE title must be on the allow-list when one is configured (the
//! configuration refuses an empty list unless bound to loopback).

use dicom_ul::association::server::AccessControl;
use dicom_ul::pdu::{AssociationRJServiceUserReason, UserIdentity};

#[derive(Debug, Clone)]
pub struct AllowList {
    allowed: Vec<String>,
}

impl AllowList {
    pub fn new(allowed: &[String]) -> Self {
        AllowList {
            allowed: allowed.iter().map(|a| a.trim().to_string()).collect(),
        }
    }
}

impl AccessControl for AllowList {
    fn check_access(
        &self,
        this_ae_title: &str,
        calling_ae_title: &str,
        called_ae_title: &str,
        _user_identity: Option<&UserIdentity>,
    ) -> Result<(), AssociationRJServiceUserReason> {
        // AE titles are space-padded on the wire and compared trimmed.
        if called_ae_title.trim() != this_ae_title.trim() {
            return Err(AssociationRJServiceUserReason::CalledAETitleNotRecognized);
        }
        let calling = calling_ae_title.trim();
        if !self.allowed.is_empty() && !self.allowed.iter().any(|a| a == calling) {
            return Err(AssociationRJServiceUserReason::CallingAETitleNotRecognized);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_called_and_calling_titles() {
        let open = AllowList::new(&[]);
        assert!(
            open.check_access("LIVERSEG", "ANY", "LIVERSEG  ", None)
                .is_ok()
        );
        assert_eq!(
            open.check_access("LIVERSEG", "ANY", "OTHER", None),
            Err(AssociationRJServiceUserReason::CalledAETitleNotRecognized)
        );
        let list = AllowList::new(&["ORTHANC".into(), "CT1".into()]);
        assert!(
            list.check_access("LIVERSEG", "CT1 ", "LIVERSEG", None)
                .is_ok()
        );
        assert_eq!(
            list.check_access("LIVERSEG", "INTRUDER", "LIVERSEG", None),
            Err(AssociationRJServiceUserReason::CallingAETitleNotRecognized)
        );
    }
}
