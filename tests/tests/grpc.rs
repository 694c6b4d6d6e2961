//! The `liverseg.v1` gRPC API of a real `liverseg serve`, from a tonic
//! client on the gateway port: the IRCADb CT goes in by SubmitSeries (each
//! file in several chunks), WatchJob follows its job to `done`, the SEG
//! comes back by FetchResult and is read with dicom-object; the error codes
//! of bad requests; the health service and reflection; one grpc-web call
//! over plain HTTP/1.1 on the same port, and the HTTP API beside it.

use dicom_dictionary_std::tags;
use liverseg_dicom::instance::read_header;
use liverseg_proto::v1::{
    self as pb, liverseg_client::LiversegClient, submit_series_request::Item,
};
use liverseg_tests::service::{Service, http_get};
use liverseg_tests::test_data;
use prost::Message;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tonic::Code;
use tonic::transport::Channel;

/// Each uploaded file is sent in pieces of this size.
const UPLOAD_CHUNK: usize = 200_000;
/// How long the job may take (the debug-built worker is slow).
const JOB_TIMEOUT: Duration = Duration::from_secs(300);

struct Ct {
    files: Vec<PathBuf>,
    study_uid: String,
    series_uid: String,
}

fn ircadb() -> Option<Ct> {
    let data = test_data()?;
    let dir = data.join("dicom/ircadb_01/PATIENT_DICOM");
    let files = liverseg_dicom::scu::collect_files(&dir).unwrap();
    let id = read_header(&files[0]).unwrap().identity;
    Some(Ct {
        files,
        study_uid: id.study_uid,
        series_uid: id.series_uid,
    })
}

/// The SubmitSeries stream of `files`: options, then each file in chunks.
fn upload_messages(files: &[PathBuf]) -> Vec<pb::SubmitSeriesRequest> {
    let mut messages = vec![pb::SubmitSeriesRequest {
        item: Some(Item::Options(pb::SubmitOptions::default())),
    }];
    for path in files {
        let bytes = std::fs::read(path).unwrap();
        let pieces: Vec<&[u8]> = bytes.chunks(UPLOAD_CHUNK).collect();
        let last = pieces.len() - 1;
        for (i, piece) in pieces.into_iter().enumerate() {
            messages.push(pb::SubmitSeriesRequest {
                item: Some(Item::File(pb::FileChunk {
                    data: piece.to_vec().into(),
                    end_of_file: i == last,
                })),
            });
        }
    }
    messages
}

fn by_reference(series_uid: &str) -> Vec<pb::SubmitSeriesRequest> {
    vec![pb::SubmitSeriesRequest {
        item: Some(Item::Options(pb::SubmitOptions {
            series_instance_uid: series_uid.to_string(),
            keep_open: false,
        })),
    }]
}

fn state_of(job: &pb::Job) -> pb::JobState {
    pb::JobState::try_from(job.state).unwrap_or(pb::JobState::Unspecified)
}

/// Follows the job to its end; every state seen, in order.
async fn watch_to_end(client: &mut LiversegClient<Channel>, job_id: &str) -> Vec<pb::Job> {
    let started = Instant::now();
    let mut stream = client
        .watch_job(pb::GetJobRequest {
            job_id: job_id.to_string(),
        })
        .await
        .expect("WatchJob")
        .into_inner();
    let first = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("WatchJob sends the current state at once")
        .expect("WatchJob stream")
        .expect("a first message");
    let mut seen = vec![first];
    let rest = async {
        while let Some(job) = stream.message().await.expect("WatchJob stream") {
            seen.push(job);
        }
    };
    tokio::time::timeout(JOB_TIMEOUT, rest)
        .await
        .unwrap_or_else(|_| panic!("job {job_id} did not end within {JOB_TIMEOUT:?}"));
    eprintln!(
        "job {job_id}: {:?} in {:.1} s",
        seen.iter().map(state_of).collect::<Vec<_>>(),
        started.elapsed().as_secs_f64()
    );
    seen
}

/// One grpc-web call (`application/grpc-web+proto`) over a plain HTTP/1.1
/// connection: (HTTP status, response messages, trailers).
fn grpc_web_call(port: u16, path: &str, request: &[u8]) -> (u16, Vec<Vec<u8>>, String) {
    let mut body = vec![0u8];
    body.extend_from_slice(&(request.len() as u32).to_be_bytes());
    body.extend_from_slice(request);
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
         Content-Type: application/grpc-web+proto\r\nAccept: application/grpc-web+proto\r\n\
         X-Grpc-Web: 1\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(&body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    assert!(head.starts_with("HTTP/1.1 "), "not HTTP/1.1: {head}");
    let code: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let mut payload = raw[split + 4..].to_vec();
    if chunked {
        payload = dechunk(&payload);
    }
    // grpc-web frames: flag byte (0x80: trailers), length, bytes.
    let (mut messages, mut trailers) = (Vec::new(), String::new());
    let mut rest = &payload[..];
    while rest.len() >= 5 {
        let flag = rest[0];
        let len = u32::from_be_bytes(rest[1..5].try_into().unwrap()) as usize;
        let frame = &rest[5..5 + len];
        if flag & 0x80 != 0 {
            trailers.push_str(&String::from_utf8_lossy(frame));
        } else {
            messages.push(frame.to_vec());
        }
        rest = &rest[5 + len..];
    }
    (code, messages, trailers)
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = raw.windows(2).position(|w| w == b"\r\n").unwrap();
        let size_text = std::str::from_utf8(&raw[..eol]).unwrap();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
        raw = &raw[eol + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

#[test]
fn grpc_submit_watch_fetch_and_errors() {
    let Some(ct) = ircadb() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let svc = Service::start(tmp.path(), &[]);
    let port = svc.gateway_port;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let channel = Channel::from_shared(format!("http://127.0.0.1:{port}"))
            .unwrap()
            .connect()
            .await
            .expect("connect to the gateway port over h2c");
        let mut client = LiversegClient::new(channel.clone());

        // The health service and reflection.
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
        for service in ["", liverseg_proto::SERVICE_NAME] {
            let status = health
                .check(tonic_health::pb::HealthCheckRequest {
                    service: service.to_string(),
                })
                .await
                .expect("Health/Check")
                .into_inner()
                .status;
            assert_eq!(
                status,
                tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
                "health of {service:?}"
            );
        }
        let services = list_services(channel.clone()).await;
        assert!(
            services.iter().any(|s| s == "liverseg.v1.Liverseg"),
            "reflection lists {services:?}"
        );
        assert!(
            services.iter().any(|s| s == "grpc.health.v1.Health"),
            "reflection lists {services:?}"
        );

        // Upload the series: each file in several messages.
        let messages = upload_messages(&ct.files);
        eprintln!(
            "uploading {} files in {} messages",
            ct.files.len(),
            messages.len()
        );
        let started = Instant::now();
        let submitted = client
            .submit_series(tokio_stream::iter(messages))
            .await
            .expect("SubmitSeries")
            .into_inner();
        eprintln!(
            "SubmitSeries: {} accepted, {} refused in {:.1} s; series {:?}",
            submitted.accepted,
            submitted.refused,
            started.elapsed().as_secs_f64(),
            submitted.series
        );
        assert_eq!(submitted.accepted as usize, ct.files.len());
        assert_eq!(submitted.refused, 0, "{:?}", submitted.failures);
        assert_eq!(submitted.series.len(), 1, "{:?}", submitted.series);
        let series = &submitted.series[0];
        assert_eq!(series.series_instance_uid, ct.series_uid);
        assert_eq!(series.study_instance_uid, ct.study_uid);
        assert_eq!(series.state, "queued", "{series:?}");
        assert_eq!(series.instances as usize, ct.files.len());
        assert!(!series.job_id.is_empty(), "{series:?}");
        assert_eq!(submitted.job_ids, vec![series.job_id.clone()]);
        let job_id = series.job_id.clone();

        // Watch it to the end.
        let seen = watch_to_end(&mut client, &job_id).await;
        let last = seen.last().unwrap();
        assert_eq!(
            state_of(last),
            pb::JobState::Done,
            "{seen:?}\nlog:\n{}",
            svc.log_text()
        );
        assert_eq!(last.id, job_id);
        assert_eq!(last.kind, pb::JobKind::Segment as i32);
        assert_eq!(last.series_instance_uid, ct.series_uid);
        assert_eq!(last.study_instance_uid, ct.study_uid);
        let volume = last.liver_volume_ml.expect("a done job has a liver volume");
        assert!(
            (500.0..4000.0).contains(&volume),
            "liver volume {volume} ml"
        );
        // The model's verdict: a whole liver, found.
        let verdict = last.assessment.as_ref().expect("a done job has a verdict");
        assert!(verdict.liver_found, "{verdict:?}");
        assert!(verdict.coverage_complete, "{verdict:?}");
        assert!(verdict.cut.is_empty() && verdict.no_liver_reason.is_empty());
        assert!(last.updated_at_ms >= last.created_at_ms);
        for pair in seen.windows(2) {
            assert_ne!(pair[0], pair[1], "WatchJob repeated a state");
        }

        // GetJob agrees with the end of the watch.
        let got = client
            .get_job(pb::GetJobRequest {
                job_id: job_id.clone(),
            })
            .await
            .expect("GetJob")
            .into_inner();
        assert_eq!(&got, last);

        // Submitting the stored series again by reference finds the same job.
        let again = client
            .submit_series(tokio_stream::iter(by_reference(&ct.series_uid)))
            .await
            .expect("SubmitSeries by reference")
            .into_inner();
        assert_eq!(again.job_ids, vec![job_id.clone()], "{again:?}");
        assert_eq!(again.accepted, 0);

        // The results, and the SEG itself.
        let results = client
            .list_results(pb::ListResultsRequest {
                job_id: job_id.clone(),
            })
            .await
            .expect("ListResults")
            .into_inner()
            .results;
        let kinds: Vec<&str> = results.iter().map(|r| r.kind.as_str()).collect();
        for kind in ["seg", "sr", "stl-document"] {
            assert!(kinds.contains(&kind), "results {kinds:?} lack {kind}");
        }
        let seg_result = results.iter().find(|r| r.kind == "seg").unwrap();
        assert_eq!(seg_result.sop_class_uid, "1.2.840.10008.5.1.4.1.1.66.4");
        let mut chunks = client
            .fetch_result(pb::FetchResultRequest {
                job_id: job_id.clone(),
                kind: "seg".into(),
            })
            .await
            .expect("FetchResult")
            .into_inner();
        let mut seg = Vec::new();
        while let Some(chunk) = chunks.message().await.expect("FetchResult stream") {
            assert!(chunk.data.len() <= liverseg_proto::CHUNK_BYTES);
            seg.extend_from_slice(&chunk.data);
        }
        assert_eq!(seg.len() as i64, seg_result.size_bytes);
        let seg_path = tmp.path().join("fetched-seg.dcm");
        std::fs::write(&seg_path, &seg).unwrap();
        let obj = dicom_object::open_file(&seg_path).expect("the fetched SEG is DICOM");
        let text = |tag| {
            obj.element(tag)
                .unwrap()
                .to_str()
                .unwrap()
                .trim_end_matches('\0')
                .to_string()
        };
        assert_eq!(text(tags::SOP_CLASS_UID), "1.2.840.10008.5.1.4.1.1.66.4");
        assert_eq!(text(tags::SOP_INSTANCE_UID), seg_result.sop_instance_uid);
        assert_eq!(text(tags::STUDY_INSTANCE_UID), ct.study_uid);
        let referenced = obj
            .element(tags::REFERENCED_SERIES_SEQUENCE)
            .expect("ReferencedSeriesSequence")
            .items()
            .expect("a sequence")
            .iter()
            .map(|item| {
                item.element(tags::SERIES_INSTANCE_UID)
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .trim_end_matches('\0')
                    .to_string()
            })
            .collect::<Vec<_>>();
        assert_eq!(referenced, vec![ct.series_uid.clone()]);
        let unknown_kind = client
            .fetch_result(pb::FetchResultRequest {
                job_id: job_id.clone(),
                kind: "no-such-kind".into(),
            })
            .await
            .err()
            .map(|s| s.code());
        assert_eq!(unknown_kind, Some(Code::NotFound));

        // The AI result is version 1 of the series' segmentation.
        let versions = client
            .list_seg_versions(pb::ListSegVersionsRequest {
                series_instance_uid: ct.series_uid.clone(),
            })
            .await
            .expect("ListSegVersions")
            .into_inner()
            .versions;
        assert_eq!(versions.len(), 1, "{versions:?}");
        assert_eq!(versions[0].version, 1);
        assert_eq!(versions[0].origin, pb::SegOrigin::Ai as i32);
        assert_eq!(versions[0].sop_instance_uid, seg_result.sop_instance_uid);
        assert_eq!(versions[0].source_series_instance_uid, ct.series_uid);

        // Sending the AI SEG back unchanged returns its stored version.
        let resubmitted = client
            .resubmit_segmentation(tokio_stream::iter(
                seg.chunks(UPLOAD_CHUNK)
                    .map(|c| pb::ResubmitRequest {
                        chunk: c.to_vec().into(),
                    })
                    .collect::<Vec<_>>(),
            ))
            .await
            .expect("ResubmitSegmentation of the AI SEG")
            .into_inner();
        assert_eq!(resubmitted, versions[0]);

        // No dead letters.
        let dead = client
            .list_dead_letters(pb::ListDeadLettersRequest { limit: 10 })
            .await
            .expect("ListDeadLetters")
            .into_inner()
            .jobs;
        assert!(dead.is_empty(), "{dead:?}");

        // Bad requests.
        let code = |r: Result<tonic::Response<pb::Job>, tonic::Status>| r.err().map(|s| s.code());
        assert_eq!(
            code(
                client
                    .get_job(pb::GetJobRequest {
                        job_id: "not-a-uuid".into()
                    })
                    .await
            ),
            Some(Code::InvalidArgument)
        );
        assert_eq!(
            code(
                client
                    .get_job(pb::GetJobRequest {
                        job_id: "0190f6d2-0000-7000-8000-000000000000".into()
                    })
                    .await
            ),
            Some(Code::NotFound)
        );
        assert_eq!(
            code(
                client
                    .replay_job(pb::GetJobRequest {
                        job_id: job_id.clone()
                    })
                    .await
            ),
            Some(Code::FailedPrecondition)
        );
        assert_eq!(
            code(
                client
                    .replay_job(pb::GetJobRequest {
                        job_id: "0190f6d2-0000-7000-8000-000000000000".into()
                    })
                    .await
            ),
            Some(Code::NotFound)
        );
        let garbage = vec![pb::ResubmitRequest {
            chunk: b"this is not a DICOM file".to_vec().into(),
        }];
        let refused = client
            .resubmit_segmentation(tokio_stream::iter(garbage))
            .await
            .expect_err("garbage is not a segmentation");
        assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
        let unknown = client
            .submit_series(tokio_stream::iter(by_reference("1.2.3.4.5.6.7.8.9")))
            .await
            .expect_err("an unknown series");
        assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");

        // grpc-web over HTTP/1.1 on the same port.
        let request = pb::GetJobRequest {
            job_id: job_id.clone(),
        }
        .encode_to_vec();
        let (status, messages, trailers) = tokio::task::spawn_blocking(move || {
            grpc_web_call(port, "/liverseg.v1.Liverseg/GetJob", &request)
        })
        .await
        .unwrap();
        assert_eq!(status, 200, "trailers: {trailers}");
        assert!(
            trailers.to_ascii_lowercase().contains("grpc-status:0"),
            "trailers: {trailers:?}"
        );
        assert_eq!(messages.len(), 1);
        let job = pb::Job::decode(&messages[0][..]).unwrap();
        assert_eq!(job.id, job_id);
        assert_eq!(state_of(&job), pb::JobState::Done);

        // The HTTP API still answers beside gRPC.
        let (code, body) = tokio::task::spawn_blocking(move || {
            http_get(port, &format!("/api/v1/jobs/{job_id}")).unwrap()
        })
        .await
        .unwrap();
        assert_eq!(code, 200, "{body}");
    });
    // Logs name UIDs, never the patient.
    let first = dicom_object::open_file(&ct.files[0]).unwrap();
    let name = first
        .element(tags::PATIENT_NAME)
        .ok()
        .and_then(|e| e.to_str().ok().map(|s| s.trim().to_string()))
        .unwrap_or_default();
    if name.len() > 3 {
        assert!(
            !svc.log_text().contains(&name),
            "the service log names the patient"
        );
    }
}

/// The services reflection lists (grpc.reflection.v1).
async fn list_services(channel: Channel) -> Vec<String> {
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let mut client = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .expect("ServerReflectionInfo")
        .into_inner();
    let response = responses
        .message()
        .await
        .expect("reflection stream")
        .expect("a reflection answer");
    match response.message_response {
        Some(MessageResponse::ListServicesResponse(list)) => {
            list.service.into_iter().map(|s| s.name).collect()
        }
        other => panic!("unexpected reflection answer {other:?}"),
    }
}

/// A series kept open, refused files listed with their position, a series
/// too short to segment reported as skipped, and the upload limit.
#[test]
fn grpc_submit_reports_refusals_skips_and_the_limit() {
    let Some(ct) = ircadb() else { return };
    let tmp = tempfile::tempdir().unwrap();
    // Room for two slices (about 0.5 MB each), not three.
    let svc = Service::start(
        tmp.path(),
        &[("LIVERSEG__GATEWAY__MAX_UPLOAD_BYTES", "1200000")],
    );
    let port = svc.gateway_port;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut client = LiversegClient::connect(format!("http://127.0.0.1:{port}"))
            .await
            .expect("connect to the gateway port over h2c");

        // One slice, kept open: stored, no job yet.
        let mut messages = vec![pb::SubmitSeriesRequest {
            item: Some(Item::Options(pb::SubmitOptions {
                series_instance_uid: String::new(),
                keep_open: true,
            })),
        }];
        messages.extend(upload_messages(&ct.files[..1]).into_iter().skip(1));
        let open = client
            .submit_series(tokio_stream::iter(messages))
            .await
            .expect("SubmitSeries keep_open")
            .into_inner();
        assert_eq!((open.accepted, open.refused), (1, 0), "{open:?}");
        assert_eq!(open.series.len(), 1);
        assert_eq!(open.series[0].state, "receiving", "{open:?}");
        assert!(open.job_ids.is_empty(), "{open:?}");

        // The same slice again and a file that is not DICOM, completed: the
        // garbage is refused by position, the one-slice series is skipped.
        let mut messages = upload_messages(&ct.files[..1]);
        messages.push(pb::SubmitSeriesRequest {
            item: Some(Item::File(pb::FileChunk {
                data: b"not a DICOM file".to_vec().into(),
                end_of_file: false,
            })),
        });
        let done = client
            .submit_series(tokio_stream::iter(messages))
            .await
            .expect("SubmitSeries")
            .into_inner();
        assert_eq!((done.accepted, done.refused), (1, 1), "{done:?}");
        assert_eq!(done.failures[0].index, 1, "{done:?}");
        assert!(done.failures[0].sop_instance_uid.is_empty());
        assert_ne!(done.failures[0].status, 0);
        assert!(!done.failures[0].reason.is_empty());
        assert_eq!(done.series.len(), 1);
        assert_eq!(done.series[0].state, "skipped", "{done:?}");
        assert!(!done.series[0].reason.is_empty(), "{done:?}");
        assert!(done.job_ids.is_empty(), "{done:?}");

        // Over gateway.max_upload_bytes.
        let too_big = client
            .submit_series(tokio_stream::iter(upload_messages(&ct.files[1..4])))
            .await
            .expect_err("three slices exceed the limit");
        assert_eq!(too_big.code(), Code::ResourceExhausted, "{too_big:?}");

        // Options after a file, and an empty stream, are malformed.
        let mut late = upload_messages(&ct.files[..1]);
        late.swap(0, 1);
        let late = client
            .submit_series(tokio_stream::iter(late))
            .await
            .expect_err("options after a file");
        assert_eq!(late.code(), Code::InvalidArgument, "{late:?}");
        let empty = client
            .submit_series(tokio_stream::iter(Vec::new()))
            .await
            .expect_err("an empty stream");
        assert_eq!(empty.code(), Code::InvalidArgument, "{empty:?}");
    });
    // Nothing is left behind in the blob store's temporary folder.
    let leftovers = liverseg_tests::wait_until(Duration::from_secs(5), || {
        std::fs::read_dir(svc.data_dir.join(".tmp"))
            .map(|d| d.count() == 0)
            .unwrap_or(true)
    });
    assert!(leftovers, "temporary files remain after refused uploads");
}
