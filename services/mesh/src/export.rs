//! Binary STL and binary glTF (GLB) encodings of a mesh.

use std::collections::BTreeMap;

use gltf_json::accessor::{ComponentType, GenericComponentType, Type};
use gltf_json::buffer::Target;
use gltf_json::material::{PbrBaseColorFactor, PbrMetallicRoughness, StrengthFactor};
use gltf_json::mesh::{Mode, Primitive, Semantic};
use gltf_json::validation::{Checked, USize64};
use gltf_json::{Accessor, Buffer, Material, Node, Root, Scene};

use crate::Mesh;

/// STL's 80-byte header: free text, which must not start with "solid" (that
/// marks ASCII STL to many readers).
const STL_HEADER: &[u8] = b"liverseg liver surface; binary STL; mm, DICOM LPS patient coordinates";

const _: () = assert!(STL_HEADER.len() <= 80);

/// Liver-like base colour, linear RGB (sRGB about 160, 70, 55).
const LIVER_RGBA: [f32; 4] = [0.35, 0.062, 0.034, 1.0];

const GLB_MAGIC: &[u8; 4] = b"glTF";
const CHUNK_JSON: &[u8; 4] = b"JSON";
const CHUNK_BIN: &[u8; 4] = b"BIN\0";

impl Mesh {
    /// Binary STL: facet normals from the winding (outward), positions in
    /// mm (LPS).
    pub fn to_stl(&self) -> Vec<u8> {
        let facets: Vec<stl_io::Triangle> = self
            .triangles
            .iter()
            .map(|&t| stl_io::Triangle {
                normal: stl_io::Normal::new(self.facet_normal(t)),
                vertices: t.map(|i| {
                    stl_io::Vertex::new(self.positions.get(i as usize).copied().unwrap_or_default())
                }),
            })
            .collect();
        let mut bytes = Vec::with_capacity(84 + 50 * facets.len());
        // Writing into a Vec cannot fail; stl_io's signature is io-generic.
        stl_io::write_stl(&mut bytes, facets.iter()).expect("writing to a Vec cannot fail");
        bytes[..STL_HEADER.len()].copy_from_slice(STL_HEADER);
        bytes
    }

    /// Binary glTF 2.0: one scene, one node (scale 0.001: positions are in
    /// mm, glTF's unit is the metre), one mesh of one indexed triangle
    /// primitive with POSITION, NORMAL and u32 indices, and one material.
    pub fn to_glb(&self) -> Vec<u8> {
        let normals = self.vertex_normals();
        let indices: Vec<u32> = self.triangles.iter().flatten().copied().collect();
        let mut bin = Vec::with_capacity(24 * self.positions.len() + 4 * indices.len());
        for p in self.positions.iter().chain(&normals) {
            for x in p {
                bin.extend_from_slice(&x.to_le_bytes());
            }
        }
        for i in &indices {
            bin.extend_from_slice(&i.to_le_bytes());
        }
        let (lo, hi) = self.bounds();
        let vertex_bytes = 12 * self.positions.len();

        let mut root = Root {
            asset: gltf_json::Asset {
                generator: Some("liverseg".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let buffer = root.push(Buffer {
            byte_length: USize64::from(bin.len()),
            name: None,
            uri: None,
            extensions: None,
            extras: Default::default(),
        });
        let mut view = |offset: usize, length: usize, target: Target| {
            root.push(gltf_json::buffer::View {
                buffer,
                byte_length: USize64::from(length),
                byte_offset: Some(USize64::from(offset)),
                byte_stride: None,
                name: None,
                target: Some(Checked::Valid(target)),
                extensions: None,
                extras: Default::default(),
            })
        };
        let position_view = view(0, vertex_bytes, Target::ArrayBuffer);
        let normal_view = view(vertex_bytes, vertex_bytes, Target::ArrayBuffer);
        let index_view = view(
            2 * vertex_bytes,
            4 * indices.len(),
            Target::ElementArrayBuffer,
        );
        let mut accessor = |view, count: usize, component, type_, bounds: Option<_>| {
            let (min, max) = match bounds {
                Some((lo, hi)) => (Some(json_vec3(lo)), Some(json_vec3(hi))),
                None => (None, None),
            };
            root.push(Accessor {
                buffer_view: Some(view),
                byte_offset: None,
                count: USize64::from(count),
                component_type: Checked::Valid(GenericComponentType(component)),
                extensions: None,
                extras: Default::default(),
                type_: Checked::Valid(type_),
                min,
                max,
                name: None,
                normalized: false,
                sparse: None,
            })
        };
        let n = self.positions.len();
        // The spec requires min and max on POSITION (viewers use them for
        // the bounding volume).
        let positions = accessor(
            position_view,
            n,
            ComponentType::F32,
            Type::Vec3,
            Some((lo, hi)),
        );
        let normals = accessor(normal_view, n, ComponentType::F32, Type::Vec3, None);
        let index_accessor = accessor(
            index_view,
            indices.len(),
            ComponentType::U32,
            Type::Scalar,
            None,
        );

        let material = root.push(Material {
            name: Some("liver".into()),
            pbr_metallic_roughness: PbrMetallicRoughness {
                base_color_factor: PbrBaseColorFactor(LIVER_RGBA),
                metallic_factor: StrengthFactor(0.0),
                roughness_factor: StrengthFactor(0.6),
                ..Default::default()
            },
            ..Default::default()
        });
        let mesh = root.push(gltf_json::Mesh {
            extensions: None,
            extras: Default::default(),
            name: Some("liver".into()),
            primitives: vec![Primitive {
                attributes: BTreeMap::from([
                    (Checked::Valid(Semantic::Positions), positions),
                    (Checked::Valid(Semantic::Normals), normals),
                ]),
                extensions: None,
                extras: Default::default(),
                indices: Some(index_accessor),
                material: Some(material),
                mode: Checked::Valid(Mode::Triangles),
                targets: None,
            }],
            weights: None,
        });
        let node = root.push(Node {
            mesh: Some(mesh),
            name: Some("liver (LPS, mm)".into()),
            scale: Some([0.001; 3]),
            ..Default::default()
        });
        let scene = root.push(Scene {
            extensions: None,
            extras: Default::default(),
            name: None,
            nodes: vec![node],
        });
        root.scene = Some(scene);

        // Serialising plain structs to a Vec cannot fail.
        let json = serde_json::to_vec(&root).expect("glTF JSON serialises");
        glb(json, bin)
    }
}

/// A JSON array of f32 written with their shortest decimal form, so that a
/// reader parsing them back as f32 gets exactly the stored values (the
/// validator compares accessor min/max with the data).
fn json_vec3(v: [f32; 3]) -> serde_json::Value {
    v.iter()
        .map(|x| x.to_string().parse::<f64>().unwrap_or(f64::from(*x)))
        .collect()
}

/// The GLB container: a 12-byte header, then the JSON chunk padded with
/// spaces and the BIN chunk padded with zeros, each to 4 bytes.
fn glb(mut json: Vec<u8>, mut bin: Vec<u8>) -> Vec<u8> {
    json.resize(json.len().next_multiple_of(4), b' ');
    bin.resize(bin.len().next_multiple_of(4), 0);
    let total = 12 + 8 + json.len() + 8 + bin.len();
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(GLB_MAGIC);
    out.extend_from_slice(&2u32.to_le_bytes());
    out.extend_from_slice(&(total as u32).to_le_bytes());
    for (kind, data) in [(CHUNK_JSON, &json), (CHUNK_BIN, &bin)] {
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
    }
    out
}
