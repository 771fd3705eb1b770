// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {MessageHashUtils} from "@openzeppelin/contracts/utils/cryptography/MessageHashUtils.sol";
import {LedgerBase} from "./LedgerBase.sol";

/// @title Staking of containers (role 0), checkers (role 1) and indexers
/// (role 2), unbonding, the committee chain, and slashing with a committee
/// quorum (SPEC R-LG2, R-LG4, R-CK6).
///
/// Trust assumptions:
/// - Stake leaves only through unbonding: `unstake` starts the unbonding
///   period, `withdrawUnbonded` returns entries whose release time has passed
///   (times are checked against the chain clock, LedgerBase). An account has
///   at most MAX_UNBONDING (16) unbonding entries per role; an unstake beyond
///   that is refused (TooManyUnbonding) until released entries are withdrawn,
///   so every loop over an account's entries is bounded (at most 48 entries).
/// - Indexer stake (role 2) is the Sybil cost of an indexer's place in the
///   endpoint registry (DciRegistry). It is not slashable: no evidence scheme
///   convicts an indexer, so a slash names role 0 or 1 (RoleNotSlashable).
/// - The committee chain. The genesis committee (epoch 0) is fixed at
///   deployment: trust on deploy, like the token's genesis allocation (the
///   deployer passes the staked checkers' chain signer addresses). Every
///   later committee is published by `setCommittee(epoch, members,
///   signatures)` with ECDSA signatures, over `committeeDigest(epoch,
///   members)`, of at least ceil(2n/3) distinct members of the latest
///   committee on chain (n members), for an epoch after it. Anyone may
///   submit it; the settler's key alone is never enough. The contract does
///   not recompute the stake-weighted sortition (R-CK7): the members sign
///   only the committee they recomputed from the published VRF proofs, so
///   the chain holds a committee only if two thirds of the previous one
///   vouched for it. A committee cannot be replaced, nor published for an
///   epoch at or before the latest one: an epoch skipped stays without a
///   committee, and nothing of it can be slashed.
/// - A slash needs ECDSA signatures over the report by at least ceil(2n/3)
///   distinct members of the epoch's committee on chain. So the settler
///   alone can never slash.
/// - A slash takes pending rewards first, then bonded stake, then unbonding
///   stake of the role (latest release first; released together, smallest
///   first), at most slashBps of the bonded amount; funds go to the slashed
///   pool, nothing is burned. This is the rule of `dci_ledger::rules::slash`,
///   which both of the settler's backends apply. A piece of evidence causes
///   at most one slash, ever: `slashApplied` is keyed by the evidence hash
///   alone, so a later epoch's committee cannot re-sign it into a second
///   penalty.
///
/// Gas bounds (`forge test --gas-report`, each call a transaction of its
/// own; test/DciLedger.t.sol, GasTest): the worst slash — the three roles'
/// lists full (48 entries) and all 16 of the role's entries taken — costs
/// about 784,000 gas; an unstake at the bound about 100,000. `setCommittee` costs
/// about 230,000 gas for 3 members (2-3 signatures), 605,000 for 10 and
/// 5,500,000 for 100 (100 signatures; 5,280,000 with 67): about 3,000 per
/// signature recovered and 50,000 per member stored, so MAX_COMMITTEE (256
/// members) stays near 14,000,000, under a block's gas limit.
abstract contract Staking is LedgerBase {
    struct Unbonding {
        uint8 role;
        uint64 releaseAtMs;
        uint256 amount;
    }

    /// Unbonding entries an account may have per role.
    uint256 public constant MAX_UNBONDING = 16;
    /// Members a committee may have.
    uint256 public constant MAX_COMMITTEE = 256;

    mapping(address => uint256[3]) public staked;
    mapping(address => Unbonding[]) internal _unbonding;
    /// Per account and role, how many of `_unbonding` are of that role.
    mapping(address => uint8[3]) internal _unbondingCount;
    /// Rewards credited and not claimed (kept here: slashing takes them first).
    mapping(address => uint256) public pendingRewards;

    mapping(uint64 => address[]) internal _committee;
    /// Epoch => member => its place in the committee from 1 (0: not a member).
    mapping(uint64 => mapping(address => uint256)) internal _memberPlace;
    /// The epoch of the latest committee on chain (0: the genesis committee).
    uint64 public latestCommitteeEpoch;
    /// Evidence hash => a slash with this evidence was applied (any epoch,
    /// offender, role or amount).
    mapping(bytes32 => bool) public slashApplied;

    bytes32 public constant SLASH_TYPEHASH = keccak256("dci/slash-report/v1");
    bytes32 public constant COMMITTEE_TYPEHASH = keccak256("dci/committee/v1");

    event Staked(address indexed account, uint8 role, uint256 amount);
    event Unstaked(address indexed account, uint8 role, uint256 amount, uint64 releaseAtMs);
    event Withdrawn(address indexed account, uint256 amount);
    /// A committee on chain: signed by `signers` members of the committee of
    /// `signedBy` (the genesis committee: by nobody, at deployment).
    event CommitteeSet(uint64 indexed epoch, address[] members, uint64 signedBy, uint256 signers);
    event Slashed(
        address indexed offender,
        uint8 role,
        uint64 epoch,
        bytes32 evidence,
        uint256 fromRewards,
        uint256 fromStake,
        uint256 fromUnbonding,
        uint256 signers
    );

    error InsufficientStake(address account, uint8 role, uint256 have, uint256 need);
    error NothingToWithdraw(address account, uint64 nowMs);
    error TooManyUnbonding(address account, uint8 role, uint256 max);
    error CommitteeEpochNotNewer(uint64 epoch, uint64 latest);
    error CommitteeQuorum(uint256 valid, uint256 needed, uint256 committee);
    error EmptyCommittee(uint64 epoch);
    error CommitteeTooLarge(uint256 members, uint256 max);
    error InvalidMember(address member);
    error DuplicateMember(address member);
    error NoCommittee(uint64 epoch);
    error SlashQuorum(uint256 valid, uint256 needed, uint256 committee);
    error SlashAlreadyApplied(bytes32 evidence);
    error NothingToSlash(address offender, uint8 role);
    error RoleNotSlashable(uint8 role);

    /// `genesisCommittee`: the committee of epoch 0, trusted on deploy.
    constructor(address[] memory genesisCommittee) {
        _storeCommittee(0, genesisCommittee);
        emit CommitteeSet(0, genesisCommittee, 0, 0);
    }

    function stake(address account, uint8 role, uint256 amount) external onlySettler {
        _checkRole(role);
        if (amount == 0) revert ZeroAmount();
        _take(account, amount);
        staked[account][role] += amount;
        totalStaked += amount;
        emit Staked(account, role, amount);
    }

    function unstake(address account, uint8 role, uint256 amount, uint64 nowMs) external onlySettler {
        _checkRole(role);
        _checkTime(nowMs);
        if (amount == 0) revert ZeroAmount();
        uint256 have = staked[account][role];
        if (have < amount) revert InsufficientStake(account, role, have, amount);
        if (_unbondingCount[account][role] >= MAX_UNBONDING) revert TooManyUnbonding(account, role, MAX_UNBONDING);
        staked[account][role] = have - amount;
        totalStaked -= amount;
        uint64 release = nowMs + _params.unbondingSecs * 1000;
        _unbonding[account].push(Unbonding(role, release, amount));
        _unbondingCount[account][role] += 1;
        totalUnbonding += amount;
        emit Unstaked(account, role, amount, release);
    }

    function withdrawUnbonded(address account, uint64 nowMs) external onlySettler {
        _checkTime(nowMs);
        Unbonding[] storage list = _unbonding[account];
        uint256 released;
        uint256 i = 0;
        while (i < list.length) {
            if (list[i].releaseAtMs <= nowMs) {
                released += list[i].amount;
                _removeUnbonding(account, i);
            } else {
                i++;
            }
        }
        if (released == 0) revert NothingToWithdraw(account, nowMs);
        totalUnbonding -= released;
        _give(account, released);
        emit Withdrawn(account, released);
    }

    function unbondingOf(address account) external view returns (Unbonding[] memory) {
        return _unbonding[account];
    }

    /// How many unbonding entries `account` has in `role` (at most MAX_UNBONDING).
    function unbondingCount(address account, uint8 role) external view returns (uint256) {
        return _unbondingCount[account][role];
    }

    /// What the latest committee signs for the next one (EIP-191 personal
    /// message of this hash): keccak256(abi.encode(COMMITTEE_TYPEHASH, chain
    /// id, this ledger, epoch, members)).
    function committeeDigest(uint64 epoch, address[] calldata members) public view returns (bytes32) {
        return keccak256(abi.encode(COMMITTEE_TYPEHASH, block.chainid, address(this), epoch, members));
    }

    /// Publishes the committee of `epoch`, signed by at least ceil(2n/3)
    /// distinct members of the latest committee on chain, for a later epoch.
    /// Anyone may submit it.
    function setCommittee(uint64 epoch, address[] calldata members, bytes[] calldata signatures) external {
        uint64 latest = latestCommitteeEpoch;
        if (epoch <= latest) revert CommitteeEpochNotNewer(epoch, latest);
        uint256 n = _committee[latest].length;
        uint256 valid = _countSigners(latest, committeeDigest(epoch, members), signatures);
        uint256 needed = (2 * n + 2) / 3;
        if (valid < needed) revert CommitteeQuorum(valid, needed, n);
        _storeCommittee(epoch, members);
        emit CommitteeSet(epoch, members, latest, valid);
    }

    function committee(uint64 epoch) external view returns (address[] memory) {
        return _committee[epoch];
    }

    function isCommitteeMember(uint64 epoch, address who) external view returns (bool) {
        return _memberPlace[epoch][who] != 0;
    }

    /// What committee members sign (EIP-191 personal message of this hash).
    function slashDigest(address offender, uint8 role, uint64 epoch, bytes32 evidence, uint256 amount)
        public
        view
        returns (bytes32)
    {
        return keccak256(
            abi.encode(SLASH_TYPEHASH, block.chainid, address(this), offender, role, epoch, evidence, amount)
        );
    }

    function slash(
        address offender,
        uint8 role,
        uint64 epoch,
        bytes32 evidence,
        uint256 amount,
        bytes[] calldata signatures
    ) external onlySettler {
        if (role > ROLE_CHECKER) revert RoleNotSlashable(role);
        if (amount == 0) revert ZeroAmount();
        uint256 n = _committee[epoch].length;
        if (n == 0) revert NoCommittee(epoch);
        if (slashApplied[evidence]) revert SlashAlreadyApplied(evidence);
        uint256 valid = _countSigners(epoch, slashDigest(offender, role, epoch, evidence, amount), signatures);
        uint256 needed = (2 * n + 2) / 3;
        if (valid < needed) revert SlashQuorum(valid, needed, n);
        slashApplied[evidence] = true;

        (uint256 fromRewards, uint256 fromStake, uint256 fromUnbonding) = _slashTake(offender, role, amount);
        emit Slashed(offender, role, epoch, evidence, fromRewards, fromStake, fromUnbonding, valid);
    }

    /// Takes `amount` from pending rewards, then stake, then unbonding stake.
    function _slashTake(address offender, uint8 role, uint256 amount)
        internal
        returns (uint256 fromRewards, uint256 fromStake, uint256 fromUnbonding)
    {
        uint256 pending = pendingRewards[offender];
        uint256 stakeNow = staked[offender][role];
        uint256 unb = _unbondingIn(offender, role);
        if (pending == 0 && stakeNow == 0 && unb == 0) revert NothingToSlash(offender, role);
        fromRewards = pending < amount ? pending : amount;
        uint256 cap = ((stakeNow + unb) * _slashBps(role)) / BPS;
        uint256 fromBonded = amount - fromRewards < cap ? amount - fromRewards : cap;
        fromStake = fromBonded < stakeNow ? fromBonded : stakeNow;
        fromUnbonding = fromBonded - fromStake;
        pendingRewards[offender] = pending - fromRewards;
        totalPending -= fromRewards;
        staked[offender][role] = stakeNow - fromStake;
        totalStaked -= fromStake;
        _takeUnbonding(offender, role, fromUnbonding);
        _give(pools.slashed, fromRewards + fromStake + fromUnbonding);
    }

    /// Records `members` as the committee of `epoch`: at least one, at most
    /// MAX_COMMITTEE, no zero address, no member twice.
    function _storeCommittee(uint64 epoch, address[] memory members) internal {
        if (members.length == 0) revert EmptyCommittee(epoch);
        if (members.length > MAX_COMMITTEE) revert CommitteeTooLarge(members.length, MAX_COMMITTEE);
        for (uint256 i = 0; i < members.length; i++) {
            address m = members[i];
            if (m == address(0)) revert InvalidMember(m);
            if (_memberPlace[epoch][m] != 0) revert DuplicateMember(m);
            _memberPlace[epoch][m] = i + 1;
            _committee[epoch].push(m);
        }
        latestCommitteeEpoch = epoch;
    }

    /// Distinct members of `epoch`'s committee whose signature over `digest`
    /// (EIP-191) is among `signatures`; invalid signatures, outsiders and
    /// repeats count for nothing. One recovery per signature, no search.
    function _countSigners(uint64 epoch, bytes32 digest, bytes[] calldata signatures)
        internal
        view
        returns (uint256 valid)
    {
        bytes32 message = MessageHashUtils.toEthSignedMessageHash(digest);
        bool[] memory seen = new bool[](_committee[epoch].length);
        for (uint256 i = 0; i < signatures.length; i++) {
            (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecover(message, signatures[i]);
            if (err != ECDSA.RecoverError.NoError) continue;
            uint256 place = _memberPlace[epoch][signer];
            if (place == 0 || seen[place - 1]) continue;
            seen[place - 1] = true;
            valid++;
        }
    }

    function _slashBps(uint8 role) internal view returns (uint256) {
        return role == 0 ? _params.containerSlashBps : _params.checkerSlashBps;
    }

    function _unbondingIn(address account, uint8 role) internal view returns (uint256 sum) {
        Unbonding[] storage list = _unbonding[account];
        for (uint256 i = 0; i < list.length; i++) {
            if (list[i].role == role) sum += list[i].amount;
        }
    }

    /// Removes entry `i` of `account`'s list (swap-remove) and counts it out.
    function _removeUnbonding(address account, uint256 i) internal {
        Unbonding[] storage list = _unbonding[account];
        _unbondingCount[account][list[i].role] -= 1;
        list[i] = list[list.length - 1];
        list.pop();
    }

    /// Takes `amount` from the role's unbonding entries, latest release
    /// first; of entries released at the same time, the smallest first. The
    /// order depends on the entries only, not on their places in the array
    /// (which swap-removes reorder), so the entries left are the ones the
    /// settler's simulation and the embedded ledger leave.
    function _takeUnbonding(address account, uint8 role, uint256 amount) internal {
        Unbonding[] storage list = _unbonding[account];
        while (amount > 0) {
            uint256 best = type(uint256).max;
            for (uint256 i = 0; i < list.length; i++) {
                if (list[i].role == role && (best == type(uint256).max || _takenBefore(list[i], list[best]))) {
                    best = i;
                }
            }
            uint256 take = list[best].amount < amount ? list[best].amount : amount;
            amount -= take;
            totalUnbonding -= take;
            if (take == list[best].amount) {
                _removeUnbonding(account, best);
            } else {
                list[best].amount -= take;
            }
        }
    }

    /// Is `a` taken before `b` by a slash: released later, or released
    /// together and smaller?
    function _takenBefore(Unbonding storage a, Unbonding storage b) internal view returns (bool) {
        return a.releaseAtMs > b.releaseAtMs || (a.releaseAtMs == b.releaseAtMs && a.amount < b.amount);
    }
}
