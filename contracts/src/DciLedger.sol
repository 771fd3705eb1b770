// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AthToken} from "./AthToken.sol";
import {LedgerBase} from "./LedgerBase.sol";
import {Escrow} from "./Escrow.sol";
import {Staking} from "./Staking.sol";
import {Rewards} from "./Rewards.sol";

/// @title The DCI ledger on an EVM chain: transfers between DCI accounts,
/// staking (Staking.sol), escrow and netted settlement (Escrow.sol), epoch
/// rewards (Rewards.sol), applied in atomic, idempotent batches.
///
/// Trust assumptions: see LedgerBase (the settler, the epoch clock),
/// AthToken (custody), Staking (the committee chain, slashing, unbonding
/// bound), Escrow (netting) and Rewards (shares). In addition:
/// - `batch` applies all of its calls or none (one transaction), and a batch
///   id is applied at most once, so a settler that lost track of a
///   transaction (RPC down, node restart) can re-send it safely.
/// - After every batch the contract checks that it holds exactly the escrow,
///   stake, unbonding and pending reward totals it owes (R-LG5).
contract DciLedger is Escrow, Rewards {
    mapping(bytes32 => bool) public applied;
    /// Block of deployment: where readers start scanning events.
    uint256 public immutable deployedAt;

    event BatchApplied(bytes32 indexed id, uint256 calls);

    error BatchAlreadyApplied(bytes32 id);
    error BatchCallFailed(uint256 index, bytes reason);
    error HoldingsMismatch(uint256 held, uint256 owed);
    error SelfTransfer(address account);

    /// `genesisCommittee`: the chain signer addresses of the committee of
    /// epoch 0 (the staked checkers at deployment), trusted on deploy.
    constructor(
        AthToken token_,
        address settler_,
        Params memory params_,
        Pools memory pools_,
        uint256 miningGenesis_,
        address[] memory genesisCommittee
    ) LedgerBase(token_, settler_, params_, pools_, miningGenesis_) Staking(genesisCommittee) {
        deployedAt = block.number;
    }

    /// Applies `calls` (ABI-encoded calls of this contract's settler
    /// functions) in order, all or none; `id` at most once.
    function batch(bytes32 id, bytes[] calldata calls) external onlySettler {
        if (applied[id]) revert BatchAlreadyApplied(id);
        applied[id] = true;
        for (uint256 i = 0; i < calls.length; i++) {
            (bool ok, bytes memory reason) = address(this).delegatecall(calls[i]);
            if (!ok) revert BatchCallFailed(i, reason);
        }
        checkHoldings();
        emit BatchApplied(id, calls.length);
    }

    /// Moves tokens between two DCI accounts.
    function move(address from, address to, uint256 amount) external onlySettler {
        if (amount == 0) revert ZeroAmount();
        if (from == to) revert SelfTransfer(from);
        token.custodialTransfer(from, to, amount);
    }

    /// Reverts unless this contract holds exactly what it owes.
    function checkHoldings() public view {
        uint256 owed = totalEscrowed + totalStaked + totalUnbonding + totalPending;
        uint256 held = token.balanceOf(address(this));
        if (held != owed) revert HoldingsMismatch(held, owed);
    }

    struct AccountRow {
        uint256 balance;
        uint256 escrowed;
        uint256 stakedContainer;
        uint256 stakedChecker;
        uint256 stakedIndexer;
        uint256 unbonding;
        uint256 pending;
    }

    /// Everything `accounts` hold, in one call.
    function accountRows(address[] calldata accounts) external view returns (AccountRow[] memory rows) {
        rows = new AccountRow[](accounts.length);
        for (uint256 i = 0; i < accounts.length; i++) {
            address a = accounts[i];
            uint256 unb;
            for (uint256 j = 0; j < _unbonding[a].length; j++) {
                unb += _unbonding[a][j].amount;
            }
            rows[i] = AccountRow(
                token.balanceOf(a), escrowed[a], staked[a][0], staked[a][1], staked[a][2], unb, pendingRewards[a]
            );
        }
    }
}
