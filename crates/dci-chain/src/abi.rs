//! The contracts' interfaces as alloy types. They mirror `contracts/src`;
//! the end-to-end tests deploy the real bytecode and call through them, so a
//! drift fails there.

#![allow(missing_docs, clippy::too_many_arguments)]

use alloy::sol;

sol! {
    #[sol(rpc, all_derives)]
    contract AthToken {
        constructor(address[] holders, uint256[] amounts);
        function bindCustodian(address ledger) external;
        function balanceOf(address account) external view returns (uint256);
        function totalSupply() external view returns (uint256);
        function transfer(address to, uint256 amount) external returns (bool);
        function custodian() external view returns (address);
        event Transfer(address indexed from, address indexed to, uint256 value);
        error AllocationMismatch(uint256 holders, uint256 amounts);
        error SupplyMismatch(uint256 expected, uint256 found);
        error NotDeployer(address caller);
        error CustodianAlreadyBound(address custodian);
        error NotCustodian(address caller);
        error ERC20InsufficientBalance(address sender, uint256 balance, uint256 needed);
    }
}

sol! {
    #[sol(rpc, all_derives)]
    contract DciLedger {
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
        struct Pools {
            address mining;
            address checkerFees;
            address indexerFees;
            address treasury;
            address slashed;
        }
        struct Lock {
            bytes16 session;
            address consumer;
            uint256 amount;
        }
        struct Debit {
            address consumer;
            uint256 released;
            uint256 refunded;
        }
        struct Credit {
            address to;
            uint256 amount;
        }
        struct Unbonding {
            uint8 role;
            uint64 releaseAtMs;
            uint256 amount;
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

        constructor(address token, address settler, Params params, Pools pools, uint256 miningGenesis, address[] genesisCommittee);

        function batch(bytes32 id, bytes[] calls) external;
        function move(address from, address to, uint256 amount) external;
        function lockEscrows(uint64 firstIndex, Lock[] locks) external;
        function settleNetted(bytes32 recordsHash, uint256[] closeWords, uint256[] refundWords, Debit[] debits, Credit[] credits) external;
        function stake(address account, uint8 role, uint256 amount) external;
        function unstake(address account, uint8 role, uint256 amount, uint64 nowMs) external;
        function withdrawUnbonded(address account, uint64 nowMs) external;
        function claimRewards(address account) external;
        function distributeEpoch(uint64 epoch, uint256 mining, uint256 checkerFees, uint256 indexerFees, address[] accounts, uint256[] amounts) external;
        function setCommittee(uint64 epoch, address[] members, bytes[] signatures) external;
        function slash(address offender, uint8 role, uint64 epoch, bytes32 evidence, uint256 amount, bytes[] signatures) external;

        function applied(bytes32 id) external view returns (bool);
        function params() external view returns (Params);
        function pools() external view returns (address mining, address checkerFees, address indexerFees, address treasury, address slashed);
        function token() external view returns (address);
        function settler() external view returns (address);
        function miningGenesis() external view returns (uint256);
        function deployedAt() external view returns (uint256);
        function nextSession() external view returns (uint64);
        function closed(uint256 word) external view returns (uint256);
        function refunded(uint256 word) external view returns (uint256);
        function distributed(uint64 epoch) external view returns (bool);
        function slashApplied(bytes32 evidence) external view returns (bool);
        function committee(uint64 epoch) external view returns (address[]);
        function latestCommitteeEpoch() external view returns (uint64);
        function isCommitteeMember(uint64 epoch, address who) external view returns (bool);
        function committeeDigest(uint64 epoch, address[] members) external view returns (bytes32);
        function genesisTime() external view returns (uint256);
        function epochEnd(uint64 epoch) external view returns (uint256);
        function unbondingCount(address account, uint8 role) external view returns (uint256);
        function MAX_UNBONDING() external view returns (uint256);
        function MAX_COMMITTEE() external view returns (uint256);
        function slashDigest(address offender, uint8 role, uint64 epoch, bytes32 evidence, uint256 amount) external view returns (bytes32);
        function emission(uint64 epoch) external view returns (uint256);
        function unbondingOf(address account) external view returns (Unbonding[]);
        function accountRows(address[] accounts) external view returns (AccountRow[] rows);
        function totalEscrowed() external view returns (uint256);
        function totalStaked() external view returns (uint256);
        function totalUnbonding() external view returns (uint256);
        function totalPending() external view returns (uint256);
        function checkHoldings() external view;

        event EscrowLocked(bytes16 indexed session, address indexed consumer, uint256 amount, uint64 index);
        event BatchApplied(bytes32 indexed id, uint256 calls);
        event CommitteeSet(uint64 indexed epoch, address[] members, uint64 signedBy, uint256 signers);

        error NotSettler(address caller);
        error ZeroAmount();
        error TimeSkew(uint256 givenMs, uint256 chainMs);
        error InvalidRole(uint8 role);
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
        error StaleSessionIndex(uint64 expected, uint64 found);
        error SessionAlreadyClosed(uint256 word, uint256 bits);
        error RefundOfOpenSession(uint256 word, uint256 bits);
        error UnknownSession(uint256 word, uint256 bits);
        error InsufficientEscrow(address consumer, uint256 have, uint256 need);
        error NotConserved(uint256 released, uint256 paidOut);
        error BadWords(uint256 length);
        error EpochAlreadyDistributed(uint64 epoch);
        error EpochNotEnded(uint64 epoch, uint256 endsAt, uint256 chainTime);
        error EmissionExceeded(uint64 epoch, uint256 allowed, uint256 found);
        error LinesMismatch(uint256 expected, uint256 found);
        error NoPendingRewards(address account);
        error BatchAlreadyApplied(bytes32 id);
        error BatchCallFailed(uint256 index, bytes reason);
        error HoldingsMismatch(uint256 held, uint256 owed);
        error SelfTransfer(address account);
        error NotCustodian(address caller);
        error ERC20InsufficientBalance(address sender, uint256 balance, uint256 needed);
    }
}

sol! {
    #[sol(rpc, all_derives)]
    contract DciRegistry {
        struct Endpoint {
            bytes32 node;
            uint8 role;
            uint64 seq;
            bytes32 vrfPublic;
            address chainSigner;
            string addr;
            bytes signature;
        }
        struct Row {
            Endpoint endpoint;
            uint256 stake;
        }
        constructor(address ledger, uint256 minCheckerStake, uint256 minIndexerStake);
        function register(Endpoint e) external;
        function withdraw(bytes32 node, uint64 seq, bytes signature) external;
        function prune(bytes32 node) external;
        function count() external view returns (uint256);
        function page(uint256 start, uint256 n) external view returns (Row[] rows);
        function endpointOf(bytes32 node) external view returns (Endpoint e);
        function lastSeq(bytes32 node) external view returns (uint64);
        function minStake(uint8 role) external view returns (uint256);
        function accountOf(bytes32 node) external view returns (address);
        function settler() external view returns (address);
        function ledger() external view returns (address);
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
    }
}
