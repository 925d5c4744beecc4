//! Checks the encoded descriptor set: it lists all six packages with the
//! services and RPCs the other crates rely on, and the protos keep the API
//! conventions (every element documented, enums start at `_UNSPECIFIED = 0`).

use std::collections::{BTreeMap, BTreeSet};

use prost::Message;
use prost_types::{DescriptorProto, FileDescriptorSet};

fn descriptor_set() -> FileDescriptorSet {
    FileDescriptorSet::decode(proto::FILE_DESCRIPTOR_SET).expect("descriptor set decodes")
}

#[test]
fn descriptor_set_lists_all_six_packages() {
    let fds = descriptor_set();
    let packages: BTreeSet<&str> = fds.file.iter().map(|f| f.package()).collect();
    let expected: BTreeSet<&str> = proto::PACKAGES.iter().copied().collect();
    assert_eq!(packages, expected);
    assert_eq!(proto::PACKAGES.len(), 6);
}

#[test]
fn services_offer_the_rpcs_the_issues_need() {
    let fds = descriptor_set();
    let mut services: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for file in &fds.file {
        for service in &file.service {
            let methods = service.method.iter().map(|m| m.name().to_owned()).collect();
            services.insert(format!("{}.{}", file.package(), service.name()), methods);
        }
    }
    let expect = |name: &str, methods: &[&str]| {
        let got = services
            .get(name)
            .unwrap_or_else(|| panic!("service {name} missing"));
        assert_eq!(
            got,
            &methods.iter().map(|m| m.to_string()).collect::<Vec<_>>(),
            "{name}"
        );
    };
    expect(
        "aerie.storage.v1.Storage",
        &[
            "Write",
            "Read",
            "Index",
            "ExecuteFragment",
            "Epochs",
            "WatchEpochs",
        ],
    );
    expect("aerie.collector.v1.Collector", &["Push", "ListRoles"]);
    expect("aerie.query.v1.Query", &["Query", "QueryRange", "Explain"]);
    expect(
        "aerie.alerter.v1.Alerter",
        &[
            "ListRules",
            "ListAlerts",
            "CreateSilence",
            "ListSilences",
            "ExpireSilence",
            "DeployGate",
        ],
    );
    expect(
        "aerie.tracer.v1.Tracer",
        &[
            "Ingest",
            "GetTrace",
            "SearchTraces",
            "Dependencies",
            "ServiceNames",
            "SpanNames",
        ],
    );
    assert_eq!(services.len(), 5, "{:?}", services.keys());

    // Read and ExecuteFragment stream their answers, WatchEpochs its changes; nothing
    // else streams.
    for file in &fds.file {
        for service in &file.service {
            for method in &service.method {
                let streams = matches!(method.name(), "Read" | "ExecuteFragment" | "WatchEpochs");
                assert_eq!(method.server_streaming(), streams, "{}", method.name());
                assert!(!method.client_streaming(), "{}", method.name());
            }
        }
    }
}

/// Source-info paths (see descriptor.proto): the field numbers of
/// FileDescriptorProto, DescriptorProto, EnumDescriptorProto and
/// ServiceDescriptorProto that hold the nested elements.
mod path {
    pub const FILE_MESSAGE: i32 = 4;
    pub const FILE_ENUM: i32 = 5;
    pub const FILE_SERVICE: i32 = 6;
    pub const MESSAGE_FIELD: i32 = 2;
    pub const MESSAGE_NESTED: i32 = 3;
    pub const MESSAGE_ENUM: i32 = 4;
    pub const MESSAGE_ONEOF: i32 = 8;
    pub const ENUM_VALUE: i32 = 2;
    pub const SERVICE_METHOD: i32 = 2;
}

/// Collects the source path and name of every element that must carry a comment.
fn message_paths(
    msg: &DescriptorProto,
    prefix: Vec<i32>,
    name: String,
    out: &mut Vec<(Vec<i32>, String)>,
) {
    if msg.options.as_ref().is_some_and(|o| o.map_entry()) {
        return; // synthesized for `map<,>` fields, which carry the comment
    }
    for (i, field) in msg.field.iter().enumerate() {
        let mut p = prefix.clone();
        p.extend([path::MESSAGE_FIELD, i as i32]);
        out.push((p, format!("{name}.{}", field.name())));
    }
    for (i, oneof) in msg.oneof_decl.iter().enumerate() {
        // proto3 `optional` fields get a synthetic oneof named `_<field>`.
        if oneof.name().starts_with('_') {
            continue;
        }
        let mut p = prefix.clone();
        p.extend([path::MESSAGE_ONEOF, i as i32]);
        out.push((p, format!("{name}.{}", oneof.name())));
    }
    for (i, nested) in msg.nested_type.iter().enumerate() {
        let mut p = prefix.clone();
        p.extend([path::MESSAGE_NESTED, i as i32]);
        if !nested.options.as_ref().is_some_and(|o| o.map_entry()) {
            out.push((p.clone(), format!("{name}.{}", nested.name())));
        }
        message_paths(nested, p, format!("{name}.{}", nested.name()), out);
    }
    for (i, e) in msg.enum_type.iter().enumerate() {
        let mut p = prefix.clone();
        p.extend([path::MESSAGE_ENUM, i as i32]);
        out.push((p, format!("{name}.{}", e.name())));
    }
}

#[test]
fn every_message_field_enum_and_rpc_is_documented() {
    let fds = descriptor_set();
    let mut undocumented = Vec::new();
    for file in &fds.file {
        let comments: BTreeMap<&[i32], &str> = file
            .source_code_info
            .as_ref()
            .expect("source info is kept")
            .location
            .iter()
            .map(|l| (l.path.as_slice(), l.leading_comments()))
            .collect();
        let mut required = Vec::new();
        for (i, msg) in file.message_type.iter().enumerate() {
            let p = vec![path::FILE_MESSAGE, i as i32];
            required.push((p.clone(), msg.name().to_owned()));
            message_paths(msg, p, msg.name().to_owned(), &mut required);
        }
        for (i, e) in file.enum_type.iter().enumerate() {
            required.push((vec![path::FILE_ENUM, i as i32], e.name().to_owned()));
            for (j, value) in e.value.iter().enumerate() {
                // The zero value's meaning is stated once, on the field or enum.
                if value.number() != 0 {
                    let p = vec![path::FILE_ENUM, i as i32, path::ENUM_VALUE, j as i32];
                    required.push((p, value.name().to_owned()));
                }
            }
        }
        for (i, service) in file.service.iter().enumerate() {
            required.push((
                vec![path::FILE_SERVICE, i as i32],
                service.name().to_owned(),
            ));
            for (j, method) in service.method.iter().enumerate() {
                let p = vec![path::FILE_SERVICE, i as i32, path::SERVICE_METHOD, j as i32];
                required.push((p, format!("{}.{}", service.name(), method.name())));
            }
        }
        for (p, name) in required {
            if comments
                .get(p.as_slice())
                .is_none_or(|c| c.trim().is_empty())
            {
                undocumented.push(format!("{}: {name}", file.name()));
            }
        }
    }
    assert!(undocumented.is_empty(), "undocumented: {undocumented:#?}");
}

#[test]
fn enums_start_with_unspecified_zero() {
    fn check(prefix: &str, e: &prost_types::EnumDescriptorProto, bad: &mut Vec<String>) {
        let first = &e.value[0];
        // SHOUTY_CASE of the enum name, e.g. KeyPart -> KEY_PART.
        let mut shout = String::new();
        for (i, c) in e.name().chars().enumerate() {
            if c.is_uppercase() && i > 0 {
                shout.push('_');
            }
            shout.push(c.to_ascii_uppercase());
        }
        if first.number() != 0 || first.name() != format!("{shout}_UNSPECIFIED") {
            bad.push(format!(
                "{prefix}{}: first value {}",
                e.name(),
                first.name()
            ));
        }
        for v in &e.value {
            if !v.name().starts_with(&format!("{shout}_")) {
                bad.push(format!(
                    "{prefix}{}: value {} lacks the prefix",
                    e.name(),
                    v.name()
                ));
            }
        }
    }
    let mut bad = Vec::new();
    for file in descriptor_set().file {
        for e in &file.enum_type {
            check(file.package(), e, &mut bad);
        }
        for msg in &file.message_type {
            for e in &msg.enum_type {
                check(file.package(), e, &mut bad);
            }
        }
    }
    assert!(bad.is_empty(), "{bad:#?}");
}

#[test]
fn packages_are_versioned_and_files_live_where_their_package_says() {
    for file in descriptor_set().file {
        let package = file.package();
        assert!(
            package.starts_with("aerie.") && package.ends_with(".v1"),
            "{package}"
        );
        let dir = package.replace('.', "/");
        assert!(
            file.name().starts_with(&format!("{dir}/")),
            "{} is not under {dir}/",
            file.name()
        );
    }
}
