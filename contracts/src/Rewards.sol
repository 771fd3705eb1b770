// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Staking} from "./Staking.sol";

/// @title Epoch rewards from the mining pool (SPEC R-LG3).
///
/// The emission schedule is computed here exactly as in dci-ledger's
/// `emission` module (year weights decaying by decayBps, budgets summing to
/// the pool's genesis allocation, the year's remainder in its last epoch).
///
/// Trust assumptions: the settler computes each participant's share from the
/// work verified off chain (capacity x uptime, correct inspections, served
/// matches). The contract enforces that an epoch is paid once and only after
/// it has ended on the chain's clock (`epochEnd`, from LedgerBase's
/// genesisTime and epochSecs: no emission ahead of time), that the
/// mining part never exceeds the epoch's emission nor the pool's balance,
/// that the fee parts never exceed the fee pools, and that the lines add up.
/// Rewards are credited as pending (Staking.pendingRewards: slashable) until
/// claimed.
abstract contract Rewards is Staking {
    uint256 internal constant YEAR_SECS = 365 * 86_400;
    uint256 internal constant WEIGHT_ONE = 1e18;

    mapping(uint64 => bool) public distributed;

    event EpochDistributed(
        uint64 indexed epoch, uint256 emitted, uint256 mining, uint256 checkerFees, uint256 indexerFees
    );
    event RewardsClaimed(address indexed account, uint256 amount);

    error EpochAlreadyDistributed(uint64 epoch);
    error EpochNotEnded(uint64 epoch, uint256 endsAt, uint256 chainTime);
    error EmissionExceeded(uint64 epoch, uint256 allowed, uint256 found);
    error LinesMismatch(uint256 expected, uint256 found);
    error NoPendingRewards(address account);

    /// What the schedule emits in `epoch`.
    function emission(uint64 epoch) public view returns (uint256) {
        uint256 perYear = YEAR_SECS / _params.epochSecs;
        uint256 year = epoch / perYear;
        uint256 years_ = _params.emissionYears;
        if (year >= years_) return 0;
        uint256 total;
        uint256 w = WEIGHT_ONE;
        uint256 wYear;
        for (uint256 y = 0; y < years_; y++) {
            if (y == year) wYear = w;
            total += w;
            w = (w * _params.decayBps) / BPS;
        }
        uint256 budget;
        if (year + 1 < years_) {
            budget = (miningGenesis * wYear) / total;
        } else {
            // The last year gets the rounding remainder.
            w = WEIGHT_ONE;
            uint256 sum;
            for (uint256 y = 0; y + 1 < years_; y++) {
                sum += (miningGenesis * w) / total;
                w = (w * _params.decayBps) / BPS;
            }
            budget = miningGenesis - sum;
        }
        uint256 amount = budget / perYear;
        if (epoch % perYear == perYear - 1) amount += budget % perYear;
        return amount;
    }

    /// When `epoch` ends (chain time, seconds): genesisTime + (epoch + 1) *
    /// epochSecs.
    function epochEnd(uint64 epoch) public view returns (uint256) {
        return genesisTime + (uint256(epoch) + 1) * _params.epochSecs;
    }

    /// Credits `epoch`'s rewards, once it has ended: `mining` from the mining
    /// pool (at most the epoch's emission) and the fee parts from the fee
    /// pools.
    function distributeEpoch(
        uint64 epoch,
        uint256 mining,
        uint256 checkerFees,
        uint256 indexerFees,
        address[] calldata accounts,
        uint256[] calldata amounts
    ) external onlySettler {
        if (distributed[epoch]) revert EpochAlreadyDistributed(epoch);
        uint256 end = epochEnd(epoch);
        if (block.timestamp < end) revert EpochNotEnded(epoch, end, block.timestamp);
        if (accounts.length != amounts.length) revert LinesMismatch(accounts.length, amounts.length);
        uint256 allowed = emission(epoch);
        if (mining > allowed) revert EmissionExceeded(epoch, allowed, mining);
        distributed[epoch] = true;
        uint256 sum;
        for (uint256 i = 0; i < accounts.length; i++) {
            pendingRewards[accounts[i]] += amounts[i];
            sum += amounts[i];
        }
        uint256 total = mining + checkerFees + indexerFees;
        if (sum != total) revert LinesMismatch(total, sum);
        _take(pools.mining, mining);
        _take(pools.checkerFees, checkerFees);
        _take(pools.indexerFees, indexerFees);
        totalPending += total;
        emit EpochDistributed(epoch, allowed, mining, checkerFees, indexerFees);
    }

    function claimRewards(address account) external onlySettler {
        uint256 amount = pendingRewards[account];
        if (amount == 0) revert NoPendingRewards(account);
        pendingRewards[account] = 0;
        totalPending -= amount;
        _give(account, amount);
        emit RewardsClaimed(account, amount);
    }
}
