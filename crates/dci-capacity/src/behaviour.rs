//! Containers that cheat, as library code: the tests, the host agent's
//! self-checks and the simulator drive the same behaviours through the same
//! two steps as an honest container (commit, then answer the reveal).

use dci_proto::ChallengeParams;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::CapacityError;
use crate::freivalds::respond;
use crate::matrix::check_dimension;
use crate::solve::{Solution, solve};
use crate::timing::{TimingClass, TimingNoise};
use dci_proto::{Response, Reveal};

/// How a container plays a capacity challenge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Behaviour {
    /// Computes the product, commits, answers truthfully.
    Honest,
    /// Honest math on hardware of class `real`, slower than the class it
    /// claims: its commitment comes as late as its real class makes it.
    SlowerClass {
        /// The hardware it really has.
        real: TimingClass,
    },
    /// Saves half the work: leaves every odd row of the product uncomputed
    /// (zeros), commits to that and answers consistently from it.
    WrongProduct,
    /// Answers with the solution of an earlier challenge of the same size
    /// (committing to its root and opening its rows).
    Replay,
    /// Commits to a root before computing anything, then computes the real
    /// product and opens its rows, which do not match the root.
    ChangeRowsAfterCommit,
    /// Commits honestly, then never answers the reveal.
    Dark,
}

impl Behaviour {
    /// Every behaviour, with `SlowerClass` claiming a GPU on a CPU host.
    pub const ALL: [Behaviour; 6] = [
        Behaviour::Honest,
        Behaviour::SlowerClass { real: TimingClass::Cpu },
        Behaviour::WrongProduct,
        Behaviour::Replay,
        Behaviour::ChangeRowsAfterCommit,
        Behaviour::Dark,
    ];

    /// A stable lowercase name.
    pub fn name(&self) -> &'static str {
        match self {
            Behaviour::Honest => "honest",
            Behaviour::SlowerClass { .. } => "slower-class",
            Behaviour::WrongProduct => "wrong-product",
            Behaviour::Replay => "replay",
            Behaviour::ChangeRowsAfterCommit => "change-rows-after-commit",
            Behaviour::Dark => "dark",
        }
    }

    /// True for [`Behaviour::Honest`] alone.
    pub fn is_honest(&self) -> bool {
        matches!(self, Behaviour::Honest)
    }

    /// Commits to a challenge the way this behaviour does. `earlier` is a
    /// solution from a previous challenge, used by [`Behaviour::Replay`]
    /// (without one, it replays the answer to a neighbouring seed).
    pub fn commit(&self, params: &ChallengeParams, earlier: Option<&Solution>) -> Result<Attempt, CapacityError> {
        let n = check_dimension(params.n)?;
        let (root, data) = match self {
            Behaviour::Honest | Behaviour::SlowerClass { .. } | Behaviour::Dark => {
                let s = solve(params)?;
                (s.root(), s)
            }
            Behaviour::WrongProduct => {
                let mut s = solve(params)?;
                for (i, row) in s.c.chunks_exact_mut(n).enumerate() {
                    if i % 2 == 1 {
                        row.fill(0.0);
                    }
                }
                let s = Solution::from_result(n, s.c)?;
                (s.root(), s)
            }
            Behaviour::Replay => {
                let old = match earlier {
                    Some(old) if old.n == n => old.clone(),
                    _ => {
                        let mut seed = params.seed;
                        seed[0] ^= 1;
                        solve(&ChallengeParams { seed, ..params.clone() })?
                    }
                };
                (old.root(), old)
            }
            Behaviour::ChangeRowsAfterCommit => {
                let guess = Solution::from_result(n, vec![0.0; n * n])?;
                (guess.root(), solve(params)?)
            }
        };
        Ok(Attempt { behaviour: *self, root, data })
    }

    /// Simulated time (ms) from challenge to commitment for a container
    /// that claims `claimed`: its real class's time under `noise`.
    pub fn commit_ms<R: Rng + ?Sized>(&self, claimed: TimingClass, n: u32, noise: &TimingNoise, rng: &mut R) -> u64 {
        let real = match self {
            Behaviour::SlowerClass { real } => *real,
            _ => claimed,
        };
        noise.sample_ms(real, n, rng)
    }
}

/// One challenge as a behaving container plays it: what it committed to and
/// the data it answers from.
#[derive(Clone, Debug, PartialEq)]
pub struct Attempt {
    behaviour: Behaviour,
    root: [u8; 32],
    data: Solution,
}

impl Attempt {
    /// The commitment sent to the checker.
    pub fn root(&self) -> [u8; 32] {
        self.root
    }

    /// The result this container answers from (for a later replay).
    pub fn solution(&self) -> &Solution {
        &self.data
    }

    /// The answer to the reveal, `None` for a container that went dark.
    pub fn respond(&self, reveal: &Reveal) -> Result<Option<Response>, CapacityError> {
        match self.behaviour {
            Behaviour::Dark => Ok(None),
            // A replay answers the challenge id it was asked, from old data.
            _ => Ok(Some(respond(&self.data, reveal)?)),
        }
    }
}
