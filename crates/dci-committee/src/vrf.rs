//! VRF keys, epoch seeds and sortition proofs (schnorrkel's Ristretto VRF).
//!
//! **Input.** The VRF input of epoch `e` is the point `H_e` hashed from the
//! transcript `("dci-committee/vrf/v1", seed_e, e)`, the same for every node,
//! so a verifier hashes to the curve once per epoch instead of once per proof
//! (schnorrkel's *malleable* input form). Malleability only matters with
//! soft-derived (HDKD) keys; DCI's VRF keys are hard-derived from the node
//! secret ([`CommitteeKey::from_identity`]), and the ticket hash binds the
//! node's public key anyway. Nothing in the input is chosen by the node:
//! the seed is fixed by the previous committee and the key is registered
//! before that seed is known.
//!
//! **Output.** `preout = sk · H_e` (32 bytes, unique for a key and an input).
//! The node's uniform draw is the first 8 bytes (little-endian) of
//! `blake3::keyed_hash(K, vrf_public ‖ preout)` with
//! `K = blake3::derive_key("dci-committee ticket v1", "")`.
//!
//! **Proof.** schnorrkel's batchable DLEQ proof `(R, Hr, s)` (96 bytes) that
//! `log_G(pk) = log_{H_e}(preout)`: with `c` the transcript challenge,
//! `R = s·G + c·pk` and `Hr = s·H_e + c·preout`. A verifier checks many at
//! once with one multiscalar multiplication of a random linear combination
//! of all `2n` equations, `Σ z_i (s_i G + c_i pk_i − R_i) + y_i (s_i H_e +
//! c_i out_i − Hr_i) = 0`, where the common `G` and `H_e` terms collapse
//! (`4n + 2` points). The 128-bit `z_i, y_i` are hashed from every proof in
//! the batch (Fiat–Shamir), so verification is deterministic and a forger
//! would need ~2^128 work. When a batch fails, each proof is checked on its
//! own with schnorrkel's `dleq_verify` to name the culprit.
//!
//! **Determinism.** `prove` is deterministic: the DLEQ nonce is schnorrkel's
//! witness (secret nonce ‖ transcript) mixed with a stream keyed by the seed
//! and epoch instead of the OS RNG, as in deterministic Schnorr signing.

use curve25519_dalek::constants::RISTRETTO_BASEPOINT_POINT;
use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use dci_model::NodeId;
use dci_proto::Identity;
use merlin::Transcript;
use schnorrkel::context::attach_rng;
use schnorrkel::points::RistrettoBoth;
use schnorrkel::vrf::{KUSAMA_VRF, Malleable, VRFInOut, VRFProofBatchable, vrf_malleable_hash};
use schnorrkel::{ExpansionMode, Keypair, MiniSecretKey, PublicKey};
use serde::{Deserialize, Serialize};
use std::sync::LazyLock;

use crate::select::Committee;

/// The public randomness of one epoch.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EpochSeed(#[serde(with = "crate::hexser")] pub [u8; 32]);

impl std::fmt::Debug for EpochSeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EpochSeed({})", hex::encode(&self.0[..8]))
    }
}

impl EpochSeed {
    /// The first seed of a network, from its name (fixed in genesis).
    pub fn genesis(network: &str) -> EpochSeed {
        EpochSeed(blake3::derive_key("dci-committee genesis seed v1", network.as_bytes()))
    }

    /// The seed of the epoch after `committee`'s:
    /// `blake3::derive_key("dci-committee seed v1", seed ‖ epoch (u64 BE) ‖
    /// the members' VRF outputs sorted bytewise)`, where `seed` and `epoch`
    /// are the committee's. The outputs were unpredictable before that epoch,
    /// so nobody could grind keys at registration against future seeds; the
    /// only lever left is a member withholding its proof (it then leaves the
    /// committee), worth one bit of bias per withholding member.
    pub fn next(committee: &Committee) -> EpochSeed {
        let mut outputs: Vec<[u8; 32]> = committee.members.iter().map(|m| m.output).collect();
        outputs.sort_unstable();
        let mut h = blake3::Hasher::new_derive_key("dci-committee seed v1");
        h.update(&committee.seed.0);
        h.update(&committee.epoch.to_be_bytes());
        for o in &outputs {
            h.update(o);
        }
        EpochSeed(*h.finalize().as_bytes())
    }
}

/// A node's VRF key pair. `Debug` shows only the node id.
#[derive(Clone)]
pub struct CommitteeKey {
    node: NodeId,
    keypair: Keypair,
}

impl std::fmt::Debug for CommitteeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CommitteeKey({})", self.node.short())
    }
}

impl CommitteeKey {
    /// The VRF key of a node, hard-derived from its ed25519 identity secret
    /// (`blake3::derive_key("dci-committee vrf key v1", secret)`), so the node
    /// has one secret to keep and the two schemes never share a key.
    pub fn from_identity(id: &Identity) -> CommitteeKey {
        let secret = id.secret_bytes();
        CommitteeKey::from_seed(id.id(), blake3::derive_key("dci-committee vrf key v1", &secret))
    }

    /// A VRF key for `node` from 32 secret bytes.
    pub fn from_seed(node: NodeId, seed: [u8; 32]) -> CommitteeKey {
        // 32 bytes always make a mini secret key.
        let mini = MiniSecretKey::from_bytes(&seed).unwrap_or_else(|_| unreachable!("32 bytes"));
        CommitteeKey { node, keypair: mini.expand_to_keypair(ExpansionMode::Ed25519) }
    }

    /// The node this key belongs to.
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// The public key to register as [`crate::Candidate::vrf_public`].
    pub fn public(&self) -> [u8; 32] {
        self.keypair.public.to_bytes()
    }
}

/// A node's published sortition proof for one epoch.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Proof {
    /// Who claims the ticket.
    pub node: NodeId,
    /// The epoch it is for.
    pub epoch: u64,
    /// The VRF pre-output `sk · H_e` (a compressed Ristretto point).
    #[serde(with = "crate::hexser")]
    pub output: [u8; 32],
    /// The batchable DLEQ proof `R ‖ Hr ‖ s`.
    #[serde(with = "crate::hexser")]
    pub proof: [u8; 96],
}

fn input_transcript(seed: &EpochSeed, epoch: u64) -> Transcript {
    let mut t = Transcript::new(b"dci-committee/vrf/v1");
    t.append_message(b"seed", &seed.0);
    t.append_u64(b"epoch", epoch);
    t
}

/// The VRF input point `H_e` of an epoch.
pub(crate) fn input_point(seed: &EpochSeed, epoch: u64) -> RistrettoBoth {
    vrf_malleable_hash(input_transcript(seed, epoch))
}

/// The uniform 64-bit draw of a node with VRF key `vrf_public` and output `output`.
pub fn uniform_of(vrf_public: &[u8; 32], output: &[u8; 32]) -> u64 {
    static KEY: LazyLock<[u8; 32]> = LazyLock::new(|| blake3::derive_key("dci-committee ticket v1", b""));
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(vrf_public);
    block[32..].copy_from_slice(output);
    let b = blake3::keyed_hash(&KEY, &block);
    u64::from_le_bytes(b.as_bytes()[..8].try_into().unwrap_or([0; 8]))
}

/// `key`'s proof for `epoch` under `seed`. Deterministic.
pub fn prove(key: &CommitteeKey, seed: &EpochSeed, epoch: u64) -> Proof {
    let mut nonce = blake3::Hasher::new_derive_key("dci-committee prove nonce v1");
    nonce.update(&seed.0);
    nonce.update(&epoch.to_be_bytes());
    let extra = attach_rng(Transcript::new(b"VRF"), XofRng(nonce.finalize_xof()));
    let (io, _, batchable) = key.keypair.vrf_sign_extra(Malleable(input_transcript(seed, epoch)), extra);
    Proof { node: key.node, epoch, output: io.to_preout().to_bytes(), proof: batchable.to_bytes() }
}

/// Why a proof does not verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum ProofFault {
    /// The output is not a canonical, non-identity Ristretto point.
    #[error("an output that is not a valid ristretto point")]
    InvalidOutput,
    /// The proof bytes do not decode.
    #[error("proof bytes that are not a canonical batchable dleq proof")]
    InvalidEncoding,
    /// The candidate's registered VRF key is not a valid point.
    #[error("a registered vrf key that is not a valid ristretto point")]
    InvalidKey,
    /// The DLEQ equations fail: wrong key, seed, epoch or tampered bytes.
    #[error("a proof that does not verify for this key, seed and epoch")]
    Equation,
}

/// One proof decoded for verification.
pub(crate) struct Decoded {
    inout: VRFInOut,
    proof: VRFProofBatchable,
    public: PublicKey,
    r: RistrettoPoint,
    hr: RistrettoPoint,
    s: Scalar,
    bytes: [u8; 96],
}

pub(crate) fn decode(input: &RistrettoBoth, vrf_public: &[u8; 32], p: &Proof) -> Result<Decoded, ProofFault> {
    if p.output == [0; 32] {
        return Err(ProofFault::InvalidOutput);
    }
    let output = RistrettoBoth::from_bytes(&p.output).map_err(|_| ProofFault::InvalidOutput)?;
    let proof = VRFProofBatchable::from_bytes(&p.proof).map_err(|_| ProofFault::InvalidEncoding)?;
    let point = |b: &[u8]| CompressedRistretto::from_slice(b).ok().and_then(|c| c.decompress());
    let (Some(r), Some(hr)) = (point(&p.proof[..32]), point(&p.proof[32..64])) else {
        return Err(ProofFault::InvalidEncoding);
    };
    let s = p.proof[64..].try_into().ok().and_then(|b| Scalar::from_canonical_bytes(b).into_option());
    let s = s.ok_or(ProofFault::InvalidEncoding)?;
    let public = PublicKey::from_bytes(vrf_public).map_err(|_| ProofFault::InvalidKey)?;
    Ok(Decoded { inout: VRFInOut { input: *input, output }, proof, public, r, hr, s, bytes: p.proof })
}

/// Checks one decoded proof on its own with schnorrkel (deterministic).
pub(crate) fn verify_one(d: &Decoded) -> Result<(), ProofFault> {
    let short = d.proof.shorten_dleq(Transcript::new(b"VRF"), &d.public, &d.inout, KUSAMA_VRF);
    d.public
        .dleq_verify(Transcript::new(b"VRF"), &d.inout, &short, KUSAMA_VRF)
        .map(|_| ())
        .map_err(|_| ProofFault::Equation)
}

/// Checks decoded proofs (all for the same input point) in one batch; see
/// the module docs.
pub(crate) fn verify_batch(ds: &[Decoded]) -> bool {
    let Some(first) = ds.first() else { return true };
    let input = &first.inout.input;
    let mut h = blake3::Hasher::new_derive_key("dci-committee batch coefficients v1");
    h.update(input.as_compressed().as_bytes());
    let mut challenges = Vec::with_capacity(ds.len());
    for d in ds {
        let short = d.proof.shorten_dleq(Transcript::new(b"VRF"), &d.public, &d.inout, KUSAMA_VRF).to_bytes();
        let c: [u8; 32] = short[..32].try_into().unwrap_or([0; 32]);
        h.update(d.public.as_compressed().as_bytes());
        h.update(d.inout.output.as_compressed().as_bytes());
        h.update(&d.bytes);
        h.update(&c);
        challenges.push(Scalar::from_bytes_mod_order(c));
    }
    let mut xof = h.finalize_xof();
    let mut coefficient = || {
        let mut b = [0u8; 16];
        xof.fill(&mut b);
        Scalar::from(u128::from_le_bytes(b))
    };
    let mut scalars = Vec::with_capacity(4 * ds.len() + 2);
    let mut points = Vec::with_capacity(4 * ds.len() + 2);
    let (mut g, mut hh) = (Scalar::ZERO, Scalar::ZERO);
    for (d, c) in ds.iter().zip(&challenges) {
        let (z, y) = (coefficient(), coefficient());
        g += z * d.s;
        hh += y * d.s;
        // z R + y Hr − z c pk − y c out, then − (Σ z s) G − (Σ y s) H below.
        scalars.extend([-(z * c), z, -(y * c), y]);
        points.extend([*d.public.as_point(), d.r, *d.inout.output.as_point(), d.hr]);
    }
    scalars.extend([-g, -hh]);
    points.extend([RISTRETTO_BASEPOINT_POINT, *input.as_point()]);
    RistrettoPoint::vartime_multiscalar_mul(scalars, points).is_identity()
}

/// Checks decoded proofs together; on failure, returns the position of the
/// first one that fails alone.
pub(crate) fn verify_many(ds: &[Decoded]) -> Result<(), (usize, ProofFault)> {
    if verify_batch(ds) {
        return Ok(());
    }
    // Find the culprit; every proof passing alone means the proofs are valid
    // (the batch is a random combination of the same equations).
    for (i, d) in ds.iter().enumerate() {
        verify_one(d).map_err(|f| (i, f))?;
    }
    Ok(())
}

/// A `CryptoRng` over a blake3 XOF (the deterministic nonce stream of [`prove`]).
struct XofRng(blake3::OutputReader);

impl rand_core::RngCore for XofRng {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.0.fill(&mut b);
        u32::from_le_bytes(b)
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.0.fill(&mut b);
        u64::from_le_bytes(b)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.0.fill(dest);
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.0.fill(dest);
        Ok(())
    }
}

impl rand_core::CryptoRng for XofRng {}
