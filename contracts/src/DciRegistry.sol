// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// What the registry reads from the ledger (DciLedger).
interface IStakes {
    function staked(address account, uint256 role) external view returns (uint256);
    function settler() external view returns (address);
}

/// @title The endpoint registry: who is in the network, on chain (issue 15).
///
/// Staked checkers and indexers publish where they are reached. A record is
/// (node id, role, sequence, address, and for a checker its committee VRF
/// key and chain signer), carrying the node's ed25519 signature over all of
/// it (`dci_proto::EndpointRecord`: domain `dci/endpoint/v1`, this chain's
/// id and this registry's address, then the fields). Every node reads the
/// records and computes the active set itself.
///
/// Trust assumptions:
/// - The EVM cannot cheaply verify ed25519, so this contract does NOT verify
///   the signature: every reader does, off chain, and ignores a record that
///   does not verify. A record is therefore only as good as its signature,
///   never as good as the fact that it is here.
/// - Only the ledger's settler submits (the gateway that holds the ledger
///   relays a request the node signed with its node key, as it relays a
///   node's stake: `POST /v1/node-register`). The settler checks the
///   signature before it pays gas; it cannot forge a record (readers would
///   ignore it), nor replay an older one (sequences only grow, and a node's
///   last sequence is kept even after its record is gone). What it can do is
///   withhold: refuse to relay, or overwrite a record with one that does not
///   verify; that is censorship, the power it already has over stakes, and
///   it is visible on chain. A sequence is at most MAX_SEQ_AHEAD_MS (15
///   min) ahead of the chain's clock, so an overwrite holds a node out
///   until its clock passes that sequence, not for good. Strangers cannot write here at all, so nobody
///   can burn a node's sequence numbers or squat its id.
/// - What the chain checks itself: the node's account (the same custodial
///   address the ledger uses for `node:<id>`, computed here from the id, so
///   the settler cannot point the check at another account) has at least
///   the role's minimum stake bonded in the ledger for that role; the
///   sequence is at most 15 minutes ahead of the chain's clock; the role
///   is a checker (1) or an indexer (2); the sequence is newer than the
///   node's last; the address is 1 to 128 bytes; the signature is 64 bytes;
///   a checker names a VRF key and a chain signer, an indexer neither; at
///   most MAX_ENDPOINTS records are listed.
/// - Stake can drop after registration (unstaking, a slash): readers compare
///   each record's current stake with the minimum at every read, and anyone
///   may `prune` a record whose stake is below it, freeing its place.
/// - Withdrawal: the node signs a record with an empty address and a newer
///   sequence; the record leaves the list (its signature is in the event, for
///   audit), and the sequence stays, so the old record cannot come back.
///
/// Gas (measured on anvil, dci-chain tests/registry.rs, whole transactions):
/// an indexer's first registration 267,844, a checker's 290,949, a newer
/// record replacing one 102,366. Reading is `page` (eth_call, no gas paid):
/// about 3,580,000 gas of computation per 100 records (forge,
/// test_the_list_is_bounded), so a full registry (1,024) is 11 calls.
contract DciRegistry {
    struct Endpoint {
        /// The node id (its ed25519 public key).
        bytes32 node;
        /// 1: checker, 2: indexer (the stake roles of the ledger).
        uint8 role;
        /// The node's sequence (it uses its clock in ms): newer replaces older.
        uint64 seq;
        /// A checker's committee VRF public key; zero for an indexer.
        bytes32 vrfPublic;
        /// A checker's chain signing address; zero for an indexer.
        address chainSigner;
        /// Where it receives node messages (`host:port`).
        string addr;
        /// The node's ed25519 signature over the record (64 bytes).
        bytes signature;
    }

    /// An endpoint with its account's current stake in its role.
    struct Row {
        Endpoint endpoint;
        uint256 stake;
    }

    uint8 public constant ROLE_CHECKER = 1;
    uint8 public constant ROLE_INDEXER = 2;
    uint256 public constant MAX_ADDR_BYTES = 128;
    uint256 public constant SIGNATURE_BYTES = 64;
    /// Records listed at once (readers page through them).
    uint256 public constant MAX_ENDPOINTS = 1024;
    /// How far a sequence (the node's clock, ms) may be ahead of the chain's
    /// clock: nobody can use up a node's sequence numbers for long.
    uint256 public constant MAX_SEQ_AHEAD_MS = 15 minutes * 1000;

    IStakes public immutable ledger;
    address public immutable settler;
    uint256 public immutable minCheckerStake;
    uint256 public immutable minIndexerStake;
    /// Block of deployment: where readers start scanning events.
    uint256 public immutable deployedAt;

    /// A node's latest sequence ever accepted (kept after withdrawal and pruning).
    mapping(bytes32 => uint64) public lastSeq;
    Endpoint[] internal _list;
    /// Node => its place in `_list` from 1 (0: not listed).
    mapping(bytes32 => uint256) internal _place;

    event EndpointSet(bytes32 indexed node, uint8 role, uint64 seq, string addr);
    event EndpointWithdrawn(bytes32 indexed node, uint64 seq, bytes signature);
    event EndpointPruned(bytes32 indexed node, uint8 role, uint256 stake, uint256 minimum);

    error NotSettler(address caller);
    error InvalidRole(uint8 role);
    error StaleSequence(bytes32 node, uint64 seq, uint64 last);
    error SequenceAhead(bytes32 node, uint64 seq, uint256 limit);
    error BadAddress(uint256 length, uint256 max);
    error BadSignature(uint256 length, uint256 expected);
    error CheckerKeys(bytes32 node);
    error IndexerKeys(bytes32 node);
    error StakeBelowMinimum(bytes32 node, uint8 role, uint256 have, uint256 need);
    error RegistryFull(uint256 max);
    error NotListed(bytes32 node);
    error StillStaked(bytes32 node, uint256 have, uint256 need);

    modifier onlySettler() {
        if (msg.sender != settler) revert NotSettler(msg.sender);
        _;
    }

    constructor(IStakes ledger_, uint256 minCheckerStake_, uint256 minIndexerStake_) {
        ledger = ledger_;
        settler = ledger_.settler();
        minCheckerStake = minCheckerStake_;
        minIndexerStake = minIndexerStake_;
        deployedAt = block.number;
    }

    /// The minimum stake of `role` (1 or 2).
    function minStake(uint8 role) public view returns (uint256) {
        if (role == ROLE_CHECKER) return minCheckerStake;
        if (role == ROLE_INDEXER) return minIndexerStake;
        revert InvalidRole(role);
    }

    /// The custodial address of the DCI account `node:<64 lowercase hex>`:
    /// the last 20 bytes of keccak256("dci/account/v1\0" ‖ account id), as
    /// `dci_chain::account_address` computes it.
    function accountOf(bytes32 node) public pure returns (address) {
        bytes memory id = new bytes(84);
        bytes memory prefix = "dci/account/v1\x00node:";
        for (uint256 i = 0; i < 20; i++) {
            id[i] = prefix[i];
        }
        bytes16 digits = "0123456789abcdef";
        for (uint256 i = 0; i < 32; i++) {
            uint8 b = uint8(node[i]);
            id[20 + 2 * i] = digits[b >> 4];
            id[21 + 2 * i] = digits[b & 15];
        }
        return address(uint160(uint256(keccak256(id))));
    }

    /// The stake `node`'s account has bonded for `role` in the ledger.
    function stakeOf(bytes32 node, uint8 role) public view returns (uint256) {
        return ledger.staked(accountOf(node), role);
    }

    /// Publishes (or replaces) `e`, a record its node signed. See the
    /// contract's notes for what is checked here and what readers check.
    function register(Endpoint calldata e) external onlySettler {
        if (e.role != ROLE_CHECKER && e.role != ROLE_INDEXER) revert InvalidRole(e.role);
        _checkSeq(e.node, e.seq);
        uint256 len = bytes(e.addr).length;
        if (len == 0 || len > MAX_ADDR_BYTES) revert BadAddress(len, MAX_ADDR_BYTES);
        if (e.signature.length != SIGNATURE_BYTES) revert BadSignature(e.signature.length, SIGNATURE_BYTES);
        if (e.role == ROLE_CHECKER && (e.vrfPublic == bytes32(0) || e.chainSigner == address(0))) {
            revert CheckerKeys(e.node);
        }
        if (e.role == ROLE_INDEXER && (e.vrfPublic != bytes32(0) || e.chainSigner != address(0))) {
            revert IndexerKeys(e.node);
        }
        uint256 have = stakeOf(e.node, e.role);
        uint256 need = minStake(e.role);
        if (have < need) revert StakeBelowMinimum(e.node, e.role, have, need);
        lastSeq[e.node] = e.seq;
        uint256 place = _place[e.node];
        if (place == 0) {
            if (_list.length >= MAX_ENDPOINTS) revert RegistryFull(MAX_ENDPOINTS);
            _list.push(e);
            _place[e.node] = _list.length;
        } else {
            _list[place - 1] = e;
        }
        emit EndpointSet(e.node, e.role, e.seq, e.addr);
    }

    /// Takes `node`'s record off the list: the node signed a record with an
    /// empty address and sequence `seq` (`signature`, kept in the event).
    function withdraw(bytes32 node, uint64 seq, bytes calldata signature) external onlySettler {
        _checkSeq(node, seq);
        if (signature.length != SIGNATURE_BYTES) revert BadSignature(signature.length, SIGNATURE_BYTES);
        if (_place[node] == 0) revert NotListed(node);
        lastSeq[node] = seq;
        _remove(node);
        emit EndpointWithdrawn(node, seq, signature);
    }

    /// Anyone may take a record off the list once its node's stake in its
    /// role is below the minimum (its sequence is kept).
    function prune(bytes32 node) external {
        uint256 place = _place[node];
        if (place == 0) revert NotListed(node);
        uint8 role = _list[place - 1].role;
        uint256 have = stakeOf(node, role);
        uint256 need = minStake(role);
        if (have >= need) revert StillStaked(node, have, need);
        _remove(node);
        emit EndpointPruned(node, role, have, need);
    }

    /// How many records are listed.
    function count() external view returns (uint256) {
        return _list.length;
    }

    /// `node`'s record (all zero when it is not listed).
    function endpointOf(bytes32 node) external view returns (Endpoint memory e) {
        uint256 place = _place[node];
        if (place != 0) e = _list[place - 1];
    }

    /// Records `start` .. `start + n` (fewer at the end), each with its
    /// account's current stake in its role: readers page through the list.
    function page(uint256 start, uint256 n) external view returns (Row[] memory rows) {
        uint256 len = _list.length;
        uint256 end = start >= len ? start : (n > len - start ? len : start + n);
        rows = new Row[](end - start);
        for (uint256 i = start; i < end; i++) {
            Endpoint storage e = _list[i];
            rows[i - start] = Row(e, stakeOf(e.node, e.role));
        }
    }

    /// A sequence newer than the node's last, and at most MAX_SEQ_AHEAD_MS
    /// ahead of the chain's clock.
    function _checkSeq(bytes32 node, uint64 seq) internal view {
        uint64 last = lastSeq[node];
        if (seq <= last) revert StaleSequence(node, seq, last);
        uint256 limit = block.timestamp * 1000 + MAX_SEQ_AHEAD_MS;
        if (seq > limit) revert SequenceAhead(node, seq, limit);
    }

    function _remove(bytes32 node) internal {
        uint256 i = _place[node] - 1;
        uint256 lastIndex = _list.length - 1;
        if (i != lastIndex) {
            _list[i] = _list[lastIndex];
            _place[_list[i].node] = i + 1;
        }
        _list.pop();
        delete _place[node];
    }
}
