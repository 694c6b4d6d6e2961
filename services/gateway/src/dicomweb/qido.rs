//! QIDO-RS: searches for studies, series and instances.
//!
//! Matching follows PS3.4 C.2.2.2 over the attributes indexed with each
//! instance: single value, UID lists, wildcards (`*`, `?`), date and time
//! ranges, universal (empty) matching. Person names match without regard
//! to case; with `fuzzymatching=true` a name also matches when each word of
//! the query starts a component of the name. `limit`, `offset` and
//! `includefield` (a comma list, repeated, or `all`) are honoured.

use super::root_url;
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_dictionary_std::StandardDataDictionary;
use liverseg_core::InstanceRecord;
use liverseg_store::SeriesSummary;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// Attributes returned at each level by default (PS3.18 table 10.6.3-3..5).
const STUDY_FIELDS: &[&str] = &[
    "00080005", "00080020", "00080030", "00080050", "00080090", "00081030", "00100010", "00100020",
    "00100030", "00100040", "00200010",
];
const SERIES_FIELDS: &[&str] = &[
    "00080005", "00080060", "0008103E", "00200011", "00080021", "00080031", "00180015",
];
const INSTANCE_FIELDS: &[&str] = &[
    "00080005", "00200013", "00280010", "00280011", "00280100", "00280008", "00700080", "00700081",
    "00080023", "00080033",
];

/// The parsed query string.
#[derive(Debug, Default)]
pub struct Query {
    pub filters: Vec<(String, String)>,
    pub include: BTreeSet<String>,
    pub include_all: bool,
    pub fuzzy: bool,
    pub limit: Option<usize>,
    pub offset: usize,
}

/// A tag given as a keyword (`PatientName`) or hex (`00100010`).
pub fn tag_key(name: &str) -> Option<String> {
    let name = name.trim();
    if name.len() == 8 && name.chars().all(|c| c.is_ascii_hexdigit()) {
        return Some(name.to_ascii_uppercase());
    }
    let entry = StandardDataDictionary.by_name(name)?;
    let tag = entry.tag_range().inner();
    Some(format!("{:04X}{:04X}", tag.group(), tag.element()))
}

fn decode(s: &str) -> String {
    let s = s.replace('+', " ");
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Query {
    pub fn parse(raw: Option<&str>) -> ApiResult<Query> {
        let mut q = Query::default();
        for pair in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let (k, v) = (decode(k), decode(v));
            match k.to_ascii_lowercase().as_str() {
                "limit" => {
                    q.limit = Some(v.parse().map_err(|_| {
                        ApiError::bad_request(format!("limit {v:?} is not a number"))
                    })?)
                }
                "offset" => {
                    q.offset = v.parse().map_err(|_| {
                        ApiError::bad_request(format!("offset {v:?} is not a number"))
                    })?
                }
                "fuzzymatching" => q.fuzzy = v.eq_ignore_ascii_case("true"),
                "includefield" => {
                    for f in v.split(',').map(str::trim).filter(|f| !f.is_empty()) {
                        if f.eq_ignore_ascii_case("all") {
                            q.include_all = true;
                        } else {
                            q.include.insert(tag_key(f).ok_or_else(|| {
                                ApiError::bad_request(format!(
                                    "unknown attribute {f:?} in includefield"
                                ))
                            })?);
                        }
                    }
                }
                // Cache busters and the like from browsers.
                "_" | "callback" => {}
                _ => {
                    let key = tag_key(&k).ok_or_else(|| {
                        ApiError::bad_request(format!("unknown query attribute {k:?}"))
                    })?;
                    q.filters.push((key, v));
                }
            }
        }
        Ok(q)
    }

    fn page<T>(&self, items: Vec<T>) -> Vec<T> {
        let limit = self.limit.unwrap_or(usize::MAX);
        items.into_iter().skip(self.offset).take(limit).collect()
    }
}

/// The values of a DICOM JSON element as text (PN: its alphabetic group).
fn texts(element: &Value) -> Vec<String> {
    element["Value"]
        .as_array()
        .map(|values| {
            values
                .iter()
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    Value::Object(o) => o
                        .get("Alphabetic")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                    other => other.to_string(),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn wildcard(pattern: &str, value: &str) -> bool {
    let (p, v): (Vec<char>, Vec<char>) = (pattern.chars().collect(), value.chars().collect());
    let (mut pi, mut vi, mut star, mut mark) = (0, 0, None, 0);
    while vi < v.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == v[vi]) {
            pi += 1;
            vi += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = vi;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            vi = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

fn in_range(range: &str, value: &str) -> bool {
    // Dates and times compare as digits: strip separators first.
    let digits = |s: &str| s.chars().filter(char::is_ascii_digit).collect::<String>();
    let (lo, hi) = range.split_once('-').unwrap_or((range, range));
    let v = digits(value);
    let (lo, hi) = (digits(lo), digits(hi));
    (lo.is_empty() || v.as_str() >= lo.as_str())
        && (hi.is_empty() || v[..hi.len().min(v.len())] <= *hi)
}

/// Does one element match one query value?
fn matches(vr: &str, element: Option<&Value>, query: &str, fuzzy: bool) -> bool {
    if query.is_empty() {
        return true;
    }
    let Some(element) = element else {
        return false;
    };
    let values = texts(element);
    match vr {
        "UI" => {
            let wanted: Vec<&str> = query.split([',', '\\']).map(str::trim).collect();
            values.iter().any(|v| wanted.contains(&v.as_str()))
        }
        "DA" | "TM" | "DT" if query.contains('-') => values.iter().any(|v| in_range(query, v)),
        "PN" => {
            let q = query.to_lowercase();
            values.iter().any(|v| {
                let v = v.to_lowercase();
                if q.contains(['*', '?']) {
                    wildcard(&q, &v)
                } else if fuzzy {
                    let parts: Vec<&str> = v.split(['^', ' ']).filter(|p| !p.is_empty()).collect();
                    q.split(['^', ' ', ','])
                        .filter(|w| !w.is_empty())
                        .all(|w| parts.iter().any(|p| p.starts_with(w)))
                } else {
                    v == q
                }
            })
        }
        _ if query.contains(['*', '?']) => values.iter().any(|v| wildcard(query, v)),
        // A list (comma or backslash) matches any of its values, as OHIF
        // sends ModalitiesInStudy=CT,SEG.
        _ => {
            let wanted: Vec<&str> = query.split([',', '\\']).map(str::trim).collect();
            values.iter().any(|v| wanted.contains(&v.as_str()))
        }
    }
}

/// VR of a tag key, from the record when present, else the dictionary.
fn vr_of(key: &str, attrs: &BTreeMap<String, Value>) -> String {
    if let Some(vr) = attrs.get(key).and_then(|e| e["vr"].as_str()) {
        return vr.to_string();
    }
    u32::from_str_radix(key, 16)
        .ok()
        .and_then(|t| {
            StandardDataDictionary
                .by_tag(dicom_core::Tag((t >> 16) as u16, t as u16))
                .map(|e| e.vr().relaxed().to_string().to_owned())
        })
        .unwrap_or_else(|| "UN".into())
}

fn matches_all(q: &Query, attrs: &BTreeMap<String, Value>) -> bool {
    q.filters
        .iter()
        .all(|(key, value)| matches(&vr_of(key, attrs), attrs.get(key), value, q.fuzzy))
}

fn uid(vr: &str, value: &str) -> Value {
    json!({ "vr": vr, "Value": [value] })
}

fn number(vr: &str, value: usize) -> Value {
    json!({ "vr": vr, "Value": [value] })
}

/// Builds one result: the defaults of the level, the included fields, and
/// the queried attributes (PS3.18 requires matching keys to be returned).
fn result(
    q: &Query,
    defaults: &[&str],
    attrs: &BTreeMap<String, Value>,
    extra: Vec<(&str, Value)>,
) -> Value {
    let mut out = Map::new();
    let wanted = defaults
        .iter()
        .map(|s| s.to_string())
        .chain(q.include.iter().cloned())
        .chain(q.filters.iter().map(|(k, _)| k.clone()));
    for key in wanted {
        if let Some(e) = attrs.get(&key) {
            out.insert(key, e.clone());
        }
    }
    if q.include_all {
        for (k, e) in attrs {
            out.insert(k.clone(), e.clone());
        }
    }
    for (k, v) in extra {
        out.insert(k.to_string(), v);
    }
    Value::Object(out)
}

pub fn dicom_json(results: Vec<Value>) -> Response {
    let mut r = axum::Json(Value::Array(results)).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/dicom+json"),
    );
    r
}

/// The study-level attributes of a group of series summaries.
struct StudyRow<'a> {
    uid: &'a str,
    series: Vec<&'a SeriesSummary>,
}

fn group_studies(summaries: &[SeriesSummary]) -> Vec<StudyRow<'_>> {
    let mut rows: Vec<StudyRow<'_>> = Vec::new();
    for s in summaries {
        match rows.iter_mut().find(|r| r.uid == s.series.study_uid) {
            Some(r) => r.series.push(s),
            None => rows.push(StudyRow {
                uid: &s.series.study_uid,
                series: vec![s],
            }),
        }
    }
    // Newest activity first, as a worklist shows them.
    rows.sort_by_key(|r| {
        std::cmp::Reverse(r.series.iter().map(|s| s.series.last_received_at).max())
    });
    rows
}

fn study_attrs(row: &StudyRow<'_>) -> BTreeMap<String, Value> {
    // Patient and study attributes from the first image series (the CT),
    // which carries them as sent by the modality.
    let first = row
        .series
        .iter()
        .find(|s| !liverseg_dicom::sop::is_derived(&s.sample.sop_class_uid))
        .unwrap_or(&row.series[0]);
    let mut attrs = first.sample.meta.attributes.clone();
    let modalities: BTreeSet<String> = row
        .series
        .iter()
        .filter_map(|s| s.series.modality.clone())
        .collect();
    attrs.insert("0020000D".into(), uid("UI", row.uid));
    attrs.insert(
        "00080061".into(),
        json!({ "vr": "CS", "Value": modalities.into_iter().collect::<Vec<_>>() }),
    );
    attrs.insert("00201206".into(), number("IS", row.series.len()));
    attrs.insert(
        "00201208".into(),
        number(
            "IS",
            row.series
                .iter()
                .map(|s| s.series.instance_count as usize)
                .sum(),
        ),
    );
    attrs
}

fn series_attrs(s: &SeriesSummary) -> BTreeMap<String, Value> {
    let mut attrs = s.sample.meta.attributes.clone();
    attrs.insert("0020000D".into(), uid("UI", &s.series.study_uid));
    attrs.insert("0020000E".into(), uid("UI", &s.series.series_uid));
    if let Some(m) = &s.series.modality {
        attrs.insert("00080060".into(), json!({ "vr": "CS", "Value": [m] }));
    }
    attrs.insert(
        "00201209".into(),
        number("IS", s.series.instance_count as usize),
    );
    attrs
}

fn instance_attrs(i: &InstanceRecord) -> BTreeMap<String, Value> {
    let mut attrs = i.meta.attributes.clone();
    attrs.insert("0020000D".into(), uid("UI", &i.study_uid));
    attrs.insert("0020000E".into(), uid("UI", &i.series_uid));
    attrs.insert("00080016".into(), uid("UI", &i.sop_class_uid));
    attrs.insert("00080018".into(), uid("UI", &i.sop_instance_uid));
    attrs.insert("00083002".into(), uid("UI", &i.transfer_syntax_uid));
    // Geometry is kept with every instance: includefield may ask for it.
    let m = &i.meta;
    let decimals = |v: &[f64]| json!({ "vr": "DS", "Value": v });
    if let Some(v) = m.image_position {
        attrs.insert("00200032".into(), decimals(&v));
    }
    if let Some(v) = m.image_orientation {
        attrs.insert("00200037".into(), decimals(&v));
    }
    if let Some(v) = m.pixel_spacing {
        attrs.insert("00280030".into(), decimals(&v));
    }
    if let Some(v) = m.slice_thickness {
        attrs.insert("00180050".into(), decimals(&[v]));
    }
    if let Some(v) = &m.frame_of_reference_uid {
        attrs.insert("00200052".into(), uid("UI", v));
    }
    attrs
}

fn retrieve(url: String) -> (&'static str, Value) {
    ("00081190", json!({ "vr": "UR", "Value": [url] }))
}

pub async fn studies(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let q = Query::parse(raw.as_deref())?;
    let root = root_url(&state, &headers);
    let summaries = state.deps.store.series_summaries(None).await?;
    let mut out = Vec::new();
    for row in group_studies(&summaries) {
        let attrs = study_attrs(&row);
        if !matches_all(&q, &attrs) {
            continue;
        }
        let mut fields = STUDY_FIELDS.to_vec();
        fields.extend(["0020000D", "00080061", "00201206", "00201208"]);
        out.push(result(
            &q,
            &fields,
            &attrs,
            vec![retrieve(format!("{root}/studies/{}", row.uid))],
        ));
    }
    Ok(dicom_json(q.page(out)))
}

async fn series_in(
    state: &AppState,
    headers: &HeaderMap,
    study: Option<&str>,
    raw: Option<&str>,
) -> ApiResult<Response> {
    let q = Query::parse(raw)?;
    let root = root_url(state, headers);
    let summaries = state.deps.store.series_summaries(study).await?;
    let mut out = Vec::new();
    for s in &summaries {
        let mut attrs = series_attrs(s);
        // Study attributes may be queried at series level too.
        for (k, v) in s.sample.meta.attributes.iter() {
            attrs.entry(k.clone()).or_insert_with(|| v.clone());
        }
        if !matches_all(&q, &attrs) {
            continue;
        }
        let mut fields = SERIES_FIELDS.to_vec();
        fields.extend(["0020000D", "0020000E", "00201209"]);
        out.push(result(
            &q,
            &fields,
            &attrs,
            vec![retrieve(format!(
                "{root}/studies/{}/series/{}",
                s.series.study_uid, s.series.series_uid
            ))],
        ));
    }
    if let Some(study) = study
        && summaries.is_empty()
    {
        return Err(ApiError::not_found(format!("no study {study}")));
    }
    Ok(dicom_json(q.page(out)))
}

pub async fn series(
    State(state): State<AppState>,
    Path(study): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    series_in(&state, &headers, Some(&study), raw.as_deref()).await
}

pub async fn all_series(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    series_in(&state, &headers, None, raw.as_deref()).await
}

fn instance_results(q: &Query, root: &str, instances: &[InstanceRecord]) -> Vec<Value> {
    let mut sorted: Vec<&InstanceRecord> = instances.iter().collect();
    sorted.sort_by_key(|i| {
        (
            i.series_uid.clone(),
            i.meta.instance_number.unwrap_or(i64::MAX),
        )
    });
    let mut fields = INSTANCE_FIELDS.to_vec();
    fields.extend(["0020000D", "0020000E", "00080016", "00080018", "00083002"]);
    sorted
        .into_iter()
        .filter_map(|i| {
            let attrs = instance_attrs(i);
            matches_all(q, &attrs).then(|| {
                result(
                    q,
                    &fields,
                    &attrs,
                    vec![retrieve(format!(
                        "{root}/studies/{}/series/{}/instances/{}",
                        i.study_uid, i.series_uid, i.sop_instance_uid
                    ))],
                )
            })
        })
        .collect()
}

pub async fn instances(
    State(state): State<AppState>,
    Path((study, series)): Path<(String, String)>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let q = Query::parse(raw.as_deref())?;
    let all = state.deps.store.series_instances(&series).await?;
    let all: Vec<InstanceRecord> = all.into_iter().filter(|i| i.study_uid == study).collect();
    if all.is_empty() {
        return Err(ApiError::not_found(format!(
            "no series {series} in study {study}"
        )));
    }
    let root = root_url(&state, &headers);
    Ok(dicom_json(q.page(instance_results(&q, &root, &all))))
}

pub async fn study_instances(
    State(state): State<AppState>,
    Path(study): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let q = Query::parse(raw.as_deref())?;
    let all = super::wado::study_records(&state, &study).await?;
    let root = root_url(&state, &headers);
    Ok(dicom_json(q.page(instance_results(&q, &root, &all))))
}

pub async fn all_instances(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let q = Query::parse(raw.as_deref())?;
    // Narrowed by study or series when the query names one.
    let named = |key: &str| {
        q.filters
            .iter()
            .find(|(k, v)| k == key && !v.is_empty())
            .map(|(_, v)| v.clone())
    };
    let mut all = Vec::new();
    if let Some(series) = named("0020000E") {
        all = state.deps.store.series_instances(&series).await?;
    } else {
        let study = named("0020000D");
        for s in state.deps.store.series_summaries(study.as_deref()).await? {
            all.extend(
                state
                    .deps
                    .store
                    .series_instances(&s.series.series_uid)
                    .await?,
            );
        }
    }
    let root = root_url(&state, &headers);
    Ok(dicom_json(q.page(instance_results(&q, &root, &all))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs() -> BTreeMap<String, Value> {
        [
            (
                "00100010",
                json!({"vr": "PN", "Value": [{"Alphabetic": "Doe^Jane"}]}),
            ),
            ("00080020", json!({"vr": "DA", "Value": ["20240115"]})),
            ("00080060", json!({"vr": "CS", "Value": ["CT"]})),
            ("0020000D", json!({"vr": "UI", "Value": ["1.2.3"]})),
            ("00200011", json!({"vr": "IS", "Value": [4]})),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    fn hit(query: &str) -> bool {
        matches_all(&Query::parse(Some(query)).unwrap(), &attrs())
    }

    #[test]
    fn matching_follows_ps3_4() {
        assert!(hit("PatientName=Doe*"));
        assert!(hit("PatientName=doe%5Ejane"));
        assert!(hit("00100010=D?e^J*"));
        assert!(!hit("PatientName=Smith*"));
        assert!(hit("PatientName=jan&fuzzymatching=true"));
        assert!(!hit("PatientName=jan"));
        assert!(hit("StudyDate=20240101-20240131"));
        assert!(hit("StudyDate=-20240115"));
        assert!(hit("StudyDate=20240115-"));
        assert!(!hit("StudyDate=20240116-"));
        assert!(hit("StudyInstanceUID=9.9,1.2.3"));
        assert!(!hit("StudyInstanceUID=1.2"));
        assert!(hit("Modality=CT&SeriesNumber=4"));
        assert!(!hit("Modality=MR"));
        assert!(hit("Modality=MR,CT"));
        assert!(hit("AccessionNumber="));
        assert!(!hit("AccessionNumber=A1"));
        assert!(Query::parse(Some("NoSuchAttribute=1")).is_err());
        assert!(Query::parse(Some("limit=ten")).is_err());
        let q = Query::parse(Some(
            "includefield=PatientAge,00081030&includefield=all&limit=2&offset=1",
        ))
        .unwrap();
        assert!(q.include_all && q.include.contains("00101010") && q.include.contains("00081030"));
        assert_eq!(q.page(vec![1, 2, 3, 4]), vec![2, 3]);
    }
}
