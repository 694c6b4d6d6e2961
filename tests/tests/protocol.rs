//! Protocol faults against a real `liverseg serve`: each gets a clean
//! rejection and the service keeps serving the next association.

use dicom_ul::Pdu;
use dicom_ul::association::client::ClientAssociationOptions;
use liverseg_dicom::{dimse, instance::data_set_offset};
use liverseg_tests::series::{Flaws, write_ct_series};
use liverseg_tests::service::{Service, http_get};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

const CT: &str = "1.2.840.10008.5.1.4.1.1.2";
const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";

/// The service still answers C-ECHO (with our own SCU). A slot held by an
/// association that was just released frees once the service has finished
/// with it (its audit record written), so a transient rejection is retried
/// for a few seconds.
async fn still_serving(svc: &Service) {
    let target = format!("LIVERSEG@127.0.0.1:{}", svc.dicom_port)
        .parse()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match liverseg_dicom::scu::echo(&target, &Default::default()).await {
            Ok(()) => return,
            Err(e)
                if e.to_string().contains("local limit")
                    && std::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("service stopped serving: {e}\n{}", svc.log_text()),
        }
    }
}

/// An association proposing CT Image Storage in explicit VR little endian;
/// returns it with the accepted presentation context id.
async fn ct_association(
    svc: &Service,
    calling: &str,
) -> (
    dicom_ul::association::AsyncClientAssociation<tokio::net::TcpStream>,
    u8,
) {
    let assoc = ClientAssociationOptions::new()
        .calling_ae_title(calling)
        .called_ae_title("LIVERSEG")
        .with_presentation_context(CT, vec![EXPLICIT_LE])
        .establish_async(svc.addr())
        .await
        .unwrap();
    let pc = assoc.presentation_contexts()[0].id;
    (assoc, pc)
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_and_truncated_pdus_do_not_stop_the_service() {
    let tmp = tempfile::tempdir().unwrap();
    let svc = Service::start(tmp.path(), &[("LIVERSEG__LISTENER__TIMEOUT_SECONDS", "3")]);

    // Bytes that are no PDU at all: the connection is closed, nothing else.
    let mut s = TcpStream::connect(svc.addr()).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    assert!(
        buf.is_empty() || buf[0] == 0x07,
        "unexpected answer to garbage: {buf:?}"
    );
    still_serving(&svc).await;

    // An association whose P-DATA-TF stops half way, then the peer vanishes.
    let (mut assoc, pc) = ct_association(&svc, "FAULTY").await;
    let cmd = dimse::store_request(1, CT, "1.2.3.4.5").unwrap();
    assoc.send(&dimse::command_pdu(pc, cmd)).await.unwrap();
    // P-DATA-TF header announcing 1000 bytes, followed by only 10.
    let stream = assoc.inner_stream();
    use tokio::io::AsyncWriteExt;
    stream
        .write_all(&[0x04, 0x00, 0, 0, 0x03, 0xE8])
        .await
        .unwrap();
    stream.write_all(&[0u8; 10]).await.unwrap();
    stream.shutdown().await.unwrap();
    drop(assoc);
    still_serving(&svc).await;

    // The truncated instance left no file behind.
    let stored =
        liverseg_dicom::scu::collect_files(&svc.data_dir.join("instances")).unwrap_or_default();
    assert!(stored.is_empty(), "{stored:?}");
    assert_eq!(
        http_get(svc.admin_port, "/healthz").map(|(c, _)| c),
        Some(200)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn no_acceptable_presentation_context_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let svc = Service::start(tmp.path(), &[]);
    // MR Image Storage is not ours, and neither is an unknown transfer syntax.
    for (class, ts) in [
        ("1.2.840.10008.5.1.4.1.1.4", EXPLICIT_LE),
        (CT, "1.2.3.4.5.6.7"),
    ] {
        let result = ClientAssociationOptions::new()
            .calling_ae_title("MRSCU")
            .called_ae_title("LIVERSEG")
            .with_presentation_context(class, vec![ts])
            .establish_async(svc.addr())
            .await;
        let err = result
            .expect_err("association must not offer a usable context")
            .to_string();
        assert!(err.to_lowercase().contains("presentation context"), "{err}");
        still_serving(&svc).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn mismatched_sop_instance_uid_is_refused_with_a900() {
    let tmp = tempfile::tempdir().unwrap();
    let series = write_ct_series(&tmp.path().join("s"), 1, 16, EXPLICIT_LE, Flaws::default());
    let bytes = std::fs::read(&series.files[0]).unwrap();
    let data = bytes[data_set_offset(&bytes).unwrap()..].to_vec();
    let svc = Service::start(tmp.path(), &[]);

    let real_uid = liverseg_dicom::instance::read_header(&series.files[0])
        .unwrap()
        .identity
        .sop_instance_uid;
    let (mut assoc, pc) = ct_association(&svc, "LIAR").await;
    for (uid, want) in [("1.2.3.999", 0xA900u16), (real_uid.as_str(), 0)] {
        let cmd = dimse::store_request(7, CT, uid).unwrap();
        assoc.send(&dimse::command_pdu(pc, cmd)).await.unwrap();
        {
            use tokio::io::AsyncWriteExt;
            let mut w = assoc.send_pdata(pc);
            w.write_all(&data).await.unwrap();
            w.finish().await.unwrap();
        }
        let Pdu::PData { data: rsp } = assoc.receive().await.unwrap() else {
            panic!("no response")
        };
        let (status, comment) = dimse::response_status(&rsp[0].data).unwrap();
        assert_eq!(status, want, "{comment:?}");
        if want != 0 {
            assert!(comment.unwrap().contains("differs"));
        }
    }
    assoc.release().await.unwrap();
    // Only the honest copy was stored.
    let stored = liverseg_dicom::scu::collect_files(&svc.data_dir.join("instances")).unwrap();
    assert_eq!(stored.len(), 1);
    still_serving(&svc).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn association_limit_answers_a_transient_rejection() {
    let tmp = tempfile::tempdir().unwrap();
    let svc = Service::start(tmp.path(), &[("LIVERSEG__LISTENER__MAX_ASSOCIATIONS", "1")]);
    let holder = ClientAssociationOptions::new()
        .calling_ae_title("HOLDER")
        .called_ae_title("LIVERSEG")
        .with_abstract_syntax("1.2.840.10008.1.1")
        .establish_async(svc.addr())
        .await
        .unwrap();
    let second = ClientAssociationOptions::new()
        .calling_ae_title("SECOND")
        .called_ae_title("LIVERSEG")
        .with_abstract_syntax("1.2.840.10008.1.1")
        .establish_async(svc.addr())
        .await;
    let err = second
        .expect_err("second association must be rejected")
        .to_string();
    assert!(err.to_lowercase().contains("reject"), "{err}");
    holder.release().await.unwrap();
    still_serving(&svc).await;
}

/// A real full disk: the data directory on a 3 MiB tmpfs. Instances that do
/// not fit are answered "out of resources" (0xA700), nothing half-written
/// stays, and the service keeps answering.
#[tokio::test(flavor = "multi_thread")]
async fn full_disk_answers_out_of_resources_and_keeps_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let mount = tmp.path().join("small");
    std::fs::create_dir_all(&mount).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=3m", "tmpfs"])
        .arg(&mount)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !mounted {
        if std::env::var_os("LIVERSEG_REQUIRE_PEERS").is_some() {
            panic!("cannot mount a tmpfs (CI runs as root and must)");
        }
        eprintln!("skipping: cannot mount a tmpfs here (needs root)");
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
    let _guard = Unmount(mount.clone());

    let series = write_ct_series(
        &tmp.path().join("big"),
        40,
        256,
        EXPLICIT_LE,
        Flaws::default(),
    );
    // The log stays off the small disk; only the data directory is on it.
    let mount_str = mount.to_str().unwrap().to_string();
    // The watermark is off: this test is about the disk really filling up.
    let svc = Service::start(
        tmp.path(),
        &[
            ("LIVERSEG__STORAGE__DATA_DIR", &mount_str),
            ("LIVERSEG__STORAGE__MIN_FREE_BYTES", "0"),
        ],
    );
    let target = format!("LIVERSEG@127.0.0.1:{}", svc.dicom_port)
        .parse()
        .unwrap();
    let report = liverseg_dicom::scu::send_files(&series.files, &target, &Default::default())
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", svc.log_text()));
    assert!(report.sent > 0, "nothing fitted: {report:?}");
    assert!(!report.failures.is_empty(), "3 MiB held 40 x 128 KiB?");
    for f in &report.failures {
        assert!(f.reason.contains("0xa700"), "{}", f.reason);
    }
    // What was acknowledged is there and complete (a file refused after its
    // rename may remain: it is unacknowledged and the sender retries it);
    // the temporary area is empty.
    let stored = liverseg_dicom::scu::collect_files(&mount.join("instances")).unwrap();
    assert!(stored.len() >= report.sent, "{report:?}\n{stored:?}");
    for f in &stored {
        liverseg_dicom::instance::read_header(f).unwrap();
    }
    let leftovers = std::fs::read_dir(mount.join(".tmp")).unwrap().count();
    assert_eq!(leftovers, 0);
    still_serving(&svc).await;
}
