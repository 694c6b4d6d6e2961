//! The DICOM JSON of instances (WADO-RS metadata), with large binary values
//! as BulkDataURI. A series' JSON is made once (one header read per
//! instance, on the blocking pool) and cached until the series changes;
//! the cached text holds a placeholder for the DICOMweb root, replaced per
//! request so that proxies (X-Forwarded-*) get their own absolute URIs.

use crate::error::{ApiError, ApiResult};
use dicom_core::VR;
use dicom_core::header::{HasLength, Header};
use dicom_dictionary_std::tags;
use dicom_object::{InMemDicomObject, OpenFileOptions};
use liverseg_core::InstanceRecord;
use liverseg_store::blob::FsBlobStore;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Stands for the DICOMweb root in cached JSON.
pub const ROOT: &str = "{{liverseg-root}}";

/// Binary values longer than this are sent as BulkDataURI.
const INLINE_MAX: usize = 1024;

pub struct Cache {
    capacity: usize,
    entries: Mutex<HashMap<String, (String, Arc<String>)>>,
}

impl Cache {
    pub fn new(capacity: usize) -> Self {
        Cache {
            capacity,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn get(&self, key: &str, version: &str) -> Option<Arc<String>> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(key)
            .filter(|(v, _)| v == version)
            .map(|(_, json)| json.clone())
    }

    fn put(&self, key: String, version: String, json: Arc<String>) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            // Small cache, rare eviction: drop an arbitrary entry.
            if let Some(k) = entries.keys().next().cloned() {
                entries.remove(&k);
            }
        }
        entries.insert(key, (version, json));
    }
}

/// What identifies a set of instances' content.
fn version(records: &[InstanceRecord]) -> String {
    let mut h = Sha256::new();
    for r in records {
        h.update(r.sop_instance_uid.as_bytes());
        h.update(r.sha256.as_bytes());
    }
    hex::encode(h.finalize())
}

/// The JSON array of `records` (one series, or a study), with [`ROOT`]
/// where the DICOMweb root goes.
pub async fn json_of(
    cache: &Cache,
    blobs: &FsBlobStore,
    key: &str,
    records: Vec<InstanceRecord>,
) -> ApiResult<Arc<String>> {
    let v = version(&records);
    if let Some(hit) = cache.get(key, &v) {
        return Ok(hit);
    }
    let blobs = blobs.clone();
    let text = tokio::task::spawn_blocking(move || -> Result<String, String> {
        let mut items = Vec::with_capacity(records.len());
        for r in &records {
            let path = blobs.path(&r.blob_key).map_err(|e| e.to_string())?;
            items.push(instance_json(&path, r)?);
        }
        serde_json::to_string(&Value::Array(items)).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| ApiError::internal("reading metadata", e))?
    .map_err(|e| ApiError::internal("reading metadata", e))?;
    let text = Arc::new(text);
    cache.put(key.to_string(), v, text.clone());
    Ok(text)
}

fn tag_key(tag: dicom_core::Tag) -> String {
    format!("{:04X}{:04X}", tag.group(), tag.element())
}

/// One instance's DICOM JSON (blocking: reads the file's header).
pub fn instance_json(path: &std::path::Path, r: &InstanceRecord) -> Result<Value, String> {
    let obj = OpenFileOptions::new()
        .read_until(tags::PIXEL_DATA)
        .open_file(path)
        .map_err(|e| format!("{}: {e}", r.sop_instance_uid))?;
    let mut ds: InMemDicomObject = obj.into_inner();
    let bulk: Vec<(dicom_core::Tag, VR)> = ds
        .iter()
        .filter(|e| {
            matches!(
                e.vr(),
                VR::OB | VR::OW | VR::OF | VR::OD | VR::OL | VR::OV | VR::UN
            ) && e.value().length().get().unwrap_or(u32::MAX) as usize > INLINE_MAX
        })
        .map(|e| (e.tag(), e.vr()))
        .collect();
    for (tag, _) in &bulk {
        ds.remove_element(*tag);
    }
    let mut json = dicom_json::to_value(&ds).map_err(|e| e.to_string())?;
    let base = format!(
        "{ROOT}/studies/{}/series/{}/instances/{}",
        r.study_uid, r.series_uid, r.sop_instance_uid
    );
    if let Some(map) = json.as_object_mut() {
        for (tag, vr) in bulk {
            let key = tag_key(tag);
            map.insert(
                key.clone(),
                serde_json::json!({ "vr": vr.to_string(), "BulkDataURI": format!("{base}/bulk/{key}") }),
            );
        }
        // Images carry pixel data (not read above); point at it.
        if r.meta.rows.is_some() && r.meta.columns.is_some() {
            let native_words = r
                .meta
                .attributes
                .get("00280100")
                .and_then(|b| b["Value"][0].as_u64())
                > Some(8);
            let vr = if native_words && !is_encapsulated(&r.transfer_syntax_uid) {
                "OW"
            } else {
                "OB"
            };
            map.insert(
                "7FE00010".into(),
                serde_json::json!({ "vr": vr, "BulkDataURI": format!("{base}/bulk/7FE00010") }),
            );
        }
        if !map.contains_key("00083002") {
            map.insert(
                "00083002".into(),
                serde_json::json!({ "vr": "UI", "Value": [r.transfer_syntax_uid] }),
            );
        }
    }
    Ok(json)
}

/// Transfer syntaxes whose pixel data is a sequence of fragments.
pub fn is_encapsulated(ts: &str) -> bool {
    !matches!(
        ts,
        "1.2.840.10008.1.2"
            | "1.2.840.10008.1.2.1"
            | "1.2.840.10008.1.2.1.99"
            | "1.2.840.10008.1.2.2"
    )
}
