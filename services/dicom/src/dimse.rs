//! DIMSE command sets for C-ECHO and C-STORE (PS3.7 section 9 and annex E).
//!
//! Command sets are always Implicit VR Little Endian and start with their
//! group length; dicom-ul carries them in P-DATA but does not build them.

use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN;

pub const C_STORE_RQ: u16 = 0x0001;
pub const C_STORE_RSP: u16 = 0x8001;
pub const C_ECHO_RQ: u16 = 0x0030;
pub const C_ECHO_RSP: u16 = 0x8030;

/// CommandDataSetType value meaning "no data set follows".
pub const NO_DATA_SET: u16 = 0x0101;

/// DIMSE status codes used by the listener (PS3.4 B.2.3, PS3.7 C).
pub mod status {
    pub const SUCCESS: u16 = 0x0000;
    /// A SOP Instance UID already stored with other content (policy reject).
    pub const DUPLICATE_SOP_INSTANCE: u16 = 0x0111;
    pub const SOP_CLASS_NOT_SUPPORTED: u16 = 0x0122;
    pub const UNRECOGNIZED_OPERATION: u16 = 0x0211;
    /// Refused: out of resources (full disk, store unavailable).
    pub const OUT_OF_RESOURCES: u16 = 0xA700;
    /// Error: data set does not match SOP class (or the command's UIDs).
    pub const DATA_SET_MISMATCH: u16 = 0xA900;
    /// Error: cannot understand (the data set does not parse).
    pub const CANNOT_UNDERSTAND: u16 = 0xC000;
}

#[derive(Debug, thiserror::Error)]
pub enum DimseError {
    #[error("command set does not parse: {0}")]
    Parse(#[source] Box<dicom_object::ReadError>),
    #[error("command set is malformed: {0}")]
    Structure(#[source] crate::structure::StructureError),
    #[error("command set lacks {0}")]
    Missing(&'static str),
    #[error("command set could not be encoded: {0}")]
    Encode(#[source] Box<dicom_object::WriteError>),
}

/// The fields of a received command that the service acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub command_field: u16,
    pub message_id: u16,
    pub affected_sop_class_uid: Option<String>,
    pub affected_sop_instance_uid: Option<String>,
    pub has_data_set: bool,
}

impl Command {
    pub fn parse(bytes: &[u8]) -> Result<Command, DimseError> {
        check(bytes)?;
        let obj =
            InMemDicomObject::read_dataset_with_ts(bytes, &IMPLICIT_VR_LITTLE_ENDIAN.erased())
                .map_err(|e| DimseError::Parse(Box::new(e)))?;
        let u16_of = |tag: Tag| obj.get(tag).and_then(|e| e.to_int::<u16>().ok());
        let str_of = |tag: Tag| {
            obj.get(tag)
                .and_then(|e| e.to_str().ok())
                .map(|s| crate::uid::trim(&s).to_string())
        };
        Ok(Command {
            command_field: u16_of(tags::COMMAND_FIELD)
                .ok_or(DimseError::Missing("CommandField"))?,
            message_id: u16_of(tags::MESSAGE_ID).unwrap_or(0),
            affected_sop_class_uid: str_of(tags::AFFECTED_SOP_CLASS_UID),
            affected_sop_instance_uid: str_of(tags::AFFECTED_SOP_INSTANCE_UID),
            has_data_set: u16_of(tags::COMMAND_DATA_SET_TYPE).is_some_and(|v| v != NO_DATA_SET),
        })
    }
}

/// Command sets come off the wire: their structure is checked before
/// dicom-rs reads them (see [`crate::structure`]).
fn check(bytes: &[u8]) -> Result<(), DimseError> {
    crate::structure::check_data_set(bytes, crate::structure::Encoding::IMPLICIT_LE)
        .map(drop)
        .map_err(DimseError::Structure)
}

/// C-ECHO-RSP with status success.
pub fn echo_response(message_id: u16) -> Result<Vec<u8>, DimseError> {
    encode(vec![
        ui(tags::AFFECTED_SOP_CLASS_UID, crate::sop::VERIFICATION),
        us(tags::COMMAND_FIELD, C_ECHO_RSP),
        us(tags::MESSAGE_ID_BEING_RESPONDED_TO, message_id),
        us(tags::COMMAND_DATA_SET_TYPE, NO_DATA_SET),
        us(tags::STATUS, status::SUCCESS),
    ])
}

/// C-ECHO-RQ.
pub fn echo_request(message_id: u16) -> Result<Vec<u8>, DimseError> {
    encode(vec![
        ui(tags::AFFECTED_SOP_CLASS_UID, crate::sop::VERIFICATION),
        us(tags::COMMAND_FIELD, C_ECHO_RQ),
        us(tags::MESSAGE_ID, message_id),
        us(tags::COMMAND_DATA_SET_TYPE, NO_DATA_SET),
    ])
}

/// C-STORE-RSP; `comment` (ErrorComment, at most 64 characters) explains
/// a failure to the sender's operator.
pub fn store_response(
    message_id: u16,
    sop_class_uid: &str,
    sop_instance_uid: &str,
    status_code: u16,
    comment: Option<&str>,
) -> Result<Vec<u8>, DimseError> {
    let mut elements = vec![
        ui(tags::AFFECTED_SOP_CLASS_UID, sop_class_uid),
        us(tags::COMMAND_FIELD, C_STORE_RSP),
        us(tags::MESSAGE_ID_BEING_RESPONDED_TO, message_id),
        us(tags::COMMAND_DATA_SET_TYPE, NO_DATA_SET),
        us(tags::STATUS, status_code),
        ui(tags::AFFECTED_SOP_INSTANCE_UID, sop_instance_uid),
    ];
    if let Some(text) = comment.filter(|_| status_code != status::SUCCESS) {
        let text: String = text.chars().filter(|c| *c != '\\').take(64).collect();
        elements.push(DataElement::new(
            tags::ERROR_COMMENT,
            VR::LO,
            PrimitiveValue::from(text),
        ));
    }
    encode(elements)
}

/// C-STORE-RQ (priority medium) announcing a data set.
pub fn store_request(
    message_id: u16,
    sop_class_uid: &str,
    sop_instance_uid: &str,
) -> Result<Vec<u8>, DimseError> {
    encode(vec![
        ui(tags::AFFECTED_SOP_CLASS_UID, sop_class_uid),
        us(tags::COMMAND_FIELD, C_STORE_RQ),
        us(tags::MESSAGE_ID, message_id),
        us(tags::PRIORITY, 0),
        us(tags::COMMAND_DATA_SET_TYPE, 0x0000),
        ui(tags::AFFECTED_SOP_INSTANCE_UID, sop_instance_uid),
    ])
}

/// A P-DATA-TF carrying one complete command set (commands are small
/// enough to fit one PDV).
pub fn command_pdu(presentation_context_id: u8, command: Vec<u8>) -> dicom_ul::Pdu {
    dicom_ul::Pdu::PData {
        data: vec![dicom_ul::pdu::PDataValue {
            presentation_context_id,
            value_type: dicom_ul::pdu::PDataValueType::Command,
            is_last: true,
            data: command,
        }],
    }
}

/// Status and comment of a received C-STORE-RSP or C-ECHO-RSP.
pub fn response_status(bytes: &[u8]) -> Result<(u16, Option<String>), DimseError> {
    check(bytes)?;
    let obj = InMemDicomObject::read_dataset_with_ts(bytes, &IMPLICIT_VR_LITTLE_ENDIAN.erased())
        .map_err(|e| DimseError::Parse(Box::new(e)))?;
    let code = obj
        .get(tags::STATUS)
        .and_then(|e| e.to_int::<u16>().ok())
        .ok_or(DimseError::Missing("Status"))?;
    let comment = obj
        .get(tags::ERROR_COMMENT)
        .and_then(|e| e.to_str().ok())
        .map(|s| s.trim().to_string());
    Ok((code, comment))
}

fn us(tag: Tag, v: u16) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, VR::US, PrimitiveValue::from(v))
}

fn ui(tag: Tag, v: &str) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, VR::UI, PrimitiveValue::from(v))
}

/// Encodes the elements and prepends CommandGroupLength, which must count
/// the bytes that follow it.
fn encode(elements: Vec<DataElement<InMemDicomObject>>) -> Result<Vec<u8>, DimseError> {
    let ts = IMPLICIT_VR_LITTLE_ENDIAN.erased();
    let body_obj = InMemDicomObject::from_element_iter(elements);
    let mut body = Vec::new();
    body_obj
        .write_dataset_with_ts(&mut body, &ts)
        .map_err(|e| DimseError::Encode(Box::new(e)))?;
    let length = InMemDicomObject::from_element_iter([DataElement::new(
        tags::COMMAND_GROUP_LENGTH,
        VR::UL,
        PrimitiveValue::from(body.len() as u32),
    )]);
    let mut out = Vec::with_capacity(body.len() + 12);
    length
        .write_dataset_with_ts(&mut out, &ts)
        .map_err(|e| DimseError::Encode(Box::new(e)))?;
    out.extend_from_slice(&body);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_response_round_trips_with_group_length() {
        let bytes = store_response(
            7,
            "1.2.840.10008.5.1.4.1.1.2",
            "1.2.3.4",
            status::DATA_SET_MISMATCH,
            Some("uid differs"),
        )
        .unwrap();
        // (0000,0000) UL, length 4, value = bytes after this 12-byte element.
        assert_eq!(&bytes[..8], &[0, 0, 0, 0, 4, 0, 0, 0]);
        let declared = u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize;
        assert_eq!(declared, bytes.len() - 12);
        let (code, comment) = response_status(&bytes).unwrap();
        assert_eq!(code, 0xA900);
        assert_eq!(comment.as_deref(), Some("uid differs"));
        let cmd = Command::parse(&bytes).unwrap();
        assert_eq!(cmd.command_field, C_STORE_RSP);
        assert_eq!(cmd.affected_sop_instance_uid.as_deref(), Some("1.2.3.4"));
        assert!(!cmd.has_data_set);
    }

    #[test]
    fn store_request_announces_a_data_set() {
        let cmd =
            Command::parse(&store_request(3, "1.2.840.10008.5.1.4.1.1.2", "1.2.3.4.5").unwrap())
                .unwrap();
        assert_eq!(cmd.command_field, C_STORE_RQ);
        assert_eq!(cmd.message_id, 3);
        assert!(cmd.has_data_set);
        assert_eq!(cmd.affected_sop_instance_uid.as_deref(), Some("1.2.3.4.5"));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(Command::parse(&[0xff; 10]).is_err());
        assert!(Command::parse(&[]).is_err());
    }
}
