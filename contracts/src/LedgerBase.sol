// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AthToken} from "./AthToken.sol";

/// @title State and rules shared by the DCI ledger modules.
///
/// Trust assumptions (for every module):
/// - One `settler` address (the DCI node operator's key) submits every
///   mutation. It is trusted to verify usage receipts (ed25519, off chain:
///   the EVM has no cheap ed25519) and to net them honestly; the contracts
///   make sure that whatever it submits conserves the supply, never takes
///   more from a consumer than the consumer locked in escrow, never closes a
///   session twice, never applies a batch twice, never releases stake before
///   its unbonding period, pays epoch rewards at most once, only once the
///   epoch has ended and at most the emission schedule, and slashes only
///   with a quorum of a committee the settler cannot choose (Staking).
/// - Times given by the settler (milliseconds) must be within MAX_SKEW_MS of
///   the chain's clock, so the settler cannot move time to release stake.
/// - Epoch e lasts from genesisTime + e * epochSecs to genesisTime + (e + 1)
///   * epochSecs (chain time, seconds); genesisTime is the deployment block's
///   time, so nobody picks it. An epoch's rewards are paid only once it has
///   ended (Rewards), so emission cannot be taken ahead of the clock.
/// - Everything the ledger holds for accounts (escrow, stake, unbonding,
///   pending rewards) is held as ATH by this contract; the invariant
///   token.balanceOf(this) == the sum of those totals is checked after every
///   batch.
abstract contract LedgerBase {
    uint256 internal constant BPS = 10_000;
    /// Stake roles (dci_ledger::StakeRole): a container host, a checker, an indexer.
    uint8 public constant ROLE_CONTAINER = 0;
    uint8 public constant ROLE_CHECKER = 1;
    uint8 public constant ROLE_INDEXER = 2;
    /// How far a settler-given time may be from the block time.
    uint256 public constant MAX_SKEW_MS = 15 minutes * 1000;

    AthToken public immutable token;
    address public immutable settler;

    /// Governance parameters, fixed at deployment (see Params in dci-ledger).
    struct Params {
        uint64 unbondingSecs;
        uint64 epochSecs;
        uint32 emissionYears;
        uint32 decayBps;
        uint32 containerSlashBps;
        uint32 checkerSlashBps;
        uint32 feeProviderBps;
        uint32 feeCheckersBps;
        uint32 feeIndexersBps;
        uint32 feeTreasuryBps;
        uint32 rewardContainersBps;
        uint32 rewardCheckersBps;
        uint32 rewardIndexersBps;
    }

    /// The pool accounts (custodial addresses of pool:mining etc.).
    struct Pools {
        address mining;
        address checkerFees;
        address indexerFees;
        address treasury;
        address slashed;
    }

    Params internal _params;
    Pools public pools;
    /// The mining pool's genesis allocation (the schedule's P).
    uint256 public immutable miningGenesis;
    /// When epoch 0 starts: the deployment block's time (seconds).
    uint256 public immutable genesisTime;

    uint256 public totalEscrowed;
    uint256 public totalStaked;
    uint256 public totalUnbonding;
    uint256 public totalPending;

    error NotSettler(address caller);
    error ZeroAmount();
    error TimeSkew(uint256 givenMs, uint256 chainMs);
    error InvalidRole(uint8 role);

    modifier onlySettler() {
        if (msg.sender != settler) revert NotSettler(msg.sender);
        _;
    }

    constructor(AthToken token_, address settler_, Params memory params_, Pools memory pools_, uint256 miningGenesis_) {
        token = token_;
        settler = settler_;
        _params = params_;
        pools = pools_;
        miningGenesis = miningGenesis_;
        genesisTime = block.timestamp;
    }

    function params() external view returns (Params memory) {
        return _params;
    }

    /// Custodial move into this contract.
    function _take(address from, uint256 amount) internal {
        if (amount > 0) token.custodialTransfer(from, address(this), amount);
    }

    /// Pays out of this contract.
    function _give(address to, uint256 amount) internal {
        if (amount > 0) token.custodialTransfer(address(this), to, amount);
    }

    function _checkTime(uint64 nowMs) internal view {
        uint256 chain = block.timestamp * 1000;
        uint256 given = nowMs;
        if (given > chain + MAX_SKEW_MS || given + MAX_SKEW_MS < chain) revert TimeSkew(given, chain);
    }

    function _checkRole(uint8 role) internal pure {
        if (role > ROLE_INDEXER) revert InvalidRole(role);
    }
}
