// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {MessageHashUtils} from "@openzeppelin/contracts/utils/cryptography/MessageHashUtils.sol";
import {LedgerBase} from "./LedgerBase.sol";

/// @title Staking of containers (role 0) and checkers (role 1), unbonding,
/// and slashing with a committee quorum (SPEC R-LG2, R-LG4, R-CK6).
///
/// Trust assumptions:
/// - Stake leaves only through unbonding: `unstake` starts the unbonding
///   period, `withdrawUnbonded` returns entries whose release time has passed
///   (times are checked against the chain clock, LedgerBase).
/// - A slash needs ECDSA signatures over the report by at least ceil(2n/3)
///   distinct members of the epoch's committee. The committee of an epoch is
///   published on chain by the settler, once, before any slash of that epoch:
///   the contract does not recompute the stake-weighted sortition (R-CK7),
///   which anyone can verify off chain against the published list. So the
///   settler alone can never slash; a slash needs the committee it published.
/// - A slash takes pending rewards first, then bonded stake, then unbonding
///   stake of the role (latest release first; released together, smallest
///   first), at most slashBps of the bonded amount; funds go to the slashed
///   pool, nothing is burned. This is the rule of `dci_ledger::rules::slash`,
///   which both of the settler's backends apply. A piece of evidence causes
///   at most one slash, ever: `slashApplied` is keyed by the evidence hash
///   alone, so a later epoch's committee cannot re-sign it into a second
///   penalty.
abstract contract Staking is LedgerBase {
    struct Unbonding {
        uint8 role;
        uint64 releaseAtMs;
        uint256 amount;
    }

    mapping(address => uint256[2]) public staked;
    mapping(address => Unbonding[]) internal _unbonding;
    /// Rewards credited and not claimed (kept here: slashing takes them first).
    mapping(address => uint256) public pendingRewards;

    mapping(uint64 => address[]) internal _committee;
    mapping(uint64 => mapping(address => bool)) public isCommitteeMember;
    /// Evidence hash => a slash with this evidence was applied (any epoch,
    /// offender, role or amount).
    mapping(bytes32 => bool) public slashApplied;

    bytes32 public constant SLASH_TYPEHASH = keccak256("dci/slash-report/v1");

    event Staked(address indexed account, uint8 role, uint256 amount);
    event Unstaked(address indexed account, uint8 role, uint256 amount, uint64 releaseAtMs);
    event Withdrawn(address indexed account, uint256 amount);
    event CommitteeSet(uint64 indexed epoch, address[] members);
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
    error CommitteeAlreadySet(uint64 epoch);
    error NoCommittee(uint64 epoch);
    error SlashQuorum(uint256 valid, uint256 needed, uint256 committee);
    error SlashAlreadyApplied(bytes32 evidence);
    error NothingToSlash(address offender, uint8 role);

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
        staked[account][role] = have - amount;
        totalStaked -= amount;
        uint64 release = nowMs + _params.unbondingSecs * 1000;
        _unbonding[account].push(Unbonding(role, release, amount));
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
                list[i] = list[list.length - 1];
                list.pop();
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

    function setCommittee(uint64 epoch, address[] calldata members) external onlySettler {
        if (_committee[epoch].length != 0) revert CommitteeAlreadySet(epoch);
        for (uint256 i = 0; i < members.length; i++) {
            if (!isCommitteeMember[epoch][members[i]]) {
                isCommitteeMember[epoch][members[i]] = true;
                _committee[epoch].push(members[i]);
            }
        }
        emit CommitteeSet(epoch, _committee[epoch]);
    }

    function committee(uint64 epoch) external view returns (address[] memory) {
        return _committee[epoch];
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
        _checkRole(role);
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

    function _countSigners(uint64 epoch, bytes32 digest, bytes[] calldata signatures) internal view returns (uint256) {
        bytes32 message = MessageHashUtils.toEthSignedMessageHash(digest);
        address[] memory seen = new address[](signatures.length);
        uint256 valid;
        for (uint256 i = 0; i < signatures.length; i++) {
            (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecover(message, signatures[i]);
            if (err != ECDSA.RecoverError.NoError || !isCommitteeMember[epoch][signer]) continue;
            bool repeat;
            for (uint256 j = 0; j < valid; j++) {
                if (seen[j] == signer) repeat = true;
            }
            if (!repeat) seen[valid++] = signer;
        }
        return valid;
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
                list[best] = list[list.length - 1];
                list.pop();
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
