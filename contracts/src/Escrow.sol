// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {LedgerBase} from "./LedgerBase.sol";

/// @title Session escrow and netted settlement of metered usage (SPEC R-LG2,
/// R-LG6, R-PF6).
///
/// A session's escrow is locked on chain when it starts: the consumer's
/// tokens move here, the consumer's escrow total grows, and the session gets
/// the next sequential index (event EscrowLocked). Settlement is batched and
/// netted: one `settleNetted` call closes any number of sessions with
///   - one bit per session in the `closed` bitmap (256 sessions per storage
///     word; sessions that start close together share words), plus the
///     `refunded` bitmap for sessions returned unpaid,
///   - one debit per consumer (escrow released: paid + returned to balance),
///   - one credit per payee (providers, fee pools, treasury),
///   - the hash of the per-session records (receipt, charge, split), which
///     the settler publishes off chain for audits and disputes.
/// Storage and calldata grow with accounts and bitmap words, not receipts.
///
/// Trust assumptions: the settler verifies receipts (ed25519) and nets them;
/// the contract enforces that each session closes once, that no consumer
/// pays more than it has in escrow, and that the batch conserves value
/// (released escrow == refunds + credits). It does not check the per-session
/// split: the records hash commits the settler to it.
abstract contract Escrow is LedgerBase {
    struct Lock {
        bytes16 session;
        address consumer;
        uint256 amount;
    }

    struct Debit {
        address consumer;
        uint256 released; // escrow released: charged + refunded
        uint256 refunded; // back to the consumer's balance
    }

    struct Credit {
        address to;
        uint256 amount;
    }

    mapping(address => uint256) public escrowed;
    /// Bit i of word i/256: session i is closed (settled or refunded).
    mapping(uint256 => uint256) public closed;
    /// Bit i of word i/256: session i was refunded unpaid.
    mapping(uint256 => uint256) public refunded;
    uint64 public nextSession;

    event EscrowLocked(bytes16 indexed session, address indexed consumer, uint256 amount, uint64 index);
    event BatchSettled(bytes32 recordsHash, uint256 sessions, uint256 released, uint256 refundedToConsumers);

    error StaleSessionIndex(uint64 expected, uint64 found);
    error SessionAlreadyClosed(uint256 word, uint256 bits);
    error RefundOfOpenSession(uint256 word, uint256 bits);
    error UnknownSession(uint256 word, uint256 bits);
    error InsufficientEscrow(address consumer, uint256 have, uint256 need);
    error NotConserved(uint256 released, uint256 paidOut);
    error BadWords(uint256 length);

    /// Locks escrows for new sessions; `firstIndex` must be `nextSession`
    /// (the settler's view of the index is current). Consecutive locks of
    /// one consumer move its tokens once (the settler sorts by consumer).
    function lockEscrows(uint64 firstIndex, Lock[] calldata locks) external onlySettler {
        if (firstIndex != nextSession) revert StaleSessionIndex(nextSession, firstIndex);
        uint256 total;
        address run;
        uint256 runAmount;
        for (uint256 i = 0; i < locks.length; i++) {
            Lock calldata l = locks[i];
            if (l.amount == 0) revert ZeroAmount();
            if (l.consumer != run) {
                _lockRun(run, runAmount);
                (run, runAmount) = (l.consumer, 0);
            }
            runAmount += l.amount;
            total += l.amount;
            // forge-lint: disable-next-line(unsafe-typecast)
            emit EscrowLocked(l.session, l.consumer, l.amount, firstIndex + uint64(i));
        }
        _lockRun(run, runAmount);
        totalEscrowed += total;
        nextSession = firstIndex + uint64(locks.length);
    }

    function _lockRun(address consumer, uint256 amount) internal {
        if (amount == 0) return;
        _take(consumer, amount);
        escrowed[consumer] += amount;
    }

    /// Closes sessions and pays them, netted. `closeWords` and `refundWords`
    /// are (word index, bit mask) pairs; refunded bits must also be closed
    /// in this call.
    function settleNetted(
        bytes32 recordsHash,
        uint256[] calldata closeWords,
        uint256[] calldata refundWords,
        Debit[] calldata debits,
        Credit[] calldata credits
    ) external onlySettler {
        if (closeWords.length % 2 != 0) revert BadWords(closeWords.length);
        if (refundWords.length % 2 != 0) revert BadWords(refundWords.length);
        uint256 sessions;
        uint256 limit = nextSession;
        for (uint256 i = 0; i < closeWords.length; i += 2) {
            uint256 w = closeWords[i];
            uint256 bits = closeWords[i + 1];
            uint256 old = closed[w];
            if (old & bits != 0) revert SessionAlreadyClosed(w, old & bits);
            // Every bit must name a session that exists.
            if (w * 256 + 256 > limit && (bits >> (limit > w * 256 ? limit - w * 256 : 0)) != 0) {
                revert UnknownSession(w, bits);
            }
            closed[w] = old | bits;
            sessions += _popcount(bits);
        }
        for (uint256 i = 0; i < refundWords.length; i += 2) {
            uint256 w = refundWords[i];
            uint256 bits = refundWords[i + 1];
            if (closed[w] & bits != bits) revert RefundOfOpenSession(w, bits & ~closed[w]);
            refunded[w] |= bits;
        }
        uint256 released;
        uint256 backToBalances;
        for (uint256 i = 0; i < debits.length; i++) {
            Debit calldata d = debits[i];
            uint256 have = escrowed[d.consumer];
            if (have < d.released) revert InsufficientEscrow(d.consumer, have, d.released);
            escrowed[d.consumer] = have - d.released;
            released += d.released;
            backToBalances += d.refunded;
            _give(d.consumer, d.refunded);
        }
        uint256 paid = backToBalances;
        for (uint256 i = 0; i < credits.length; i++) {
            paid += credits[i].amount;
            _give(credits[i].to, credits[i].amount);
        }
        if (paid != released) revert NotConserved(released, paid);
        totalEscrowed -= released;
        emit BatchSettled(recordsHash, sessions, released, backToBalances);
    }

    /// Set bits of `x` (SWAR: constant gas per word).
    function _popcount(uint256 x) internal pure returns (uint256) {
        if (x == type(uint256).max) return 256;
        unchecked {
            uint256 m1 = 0x5555555555555555555555555555555555555555555555555555555555555555;
            uint256 m2 = 0x3333333333333333333333333333333333333333333333333333333333333333;
            uint256 m4 = 0x0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f;
            uint256 h01 = 0x0101010101010101010101010101010101010101010101010101010101010101;
            x = x - ((x >> 1) & m1);
            x = (x & m2) + ((x >> 2) & m2);
            x = (x + (x >> 4)) & m4;
            return (x * h01) >> 248;
        }
    }
}
