// The syncjob components' MongoDB roles and users (docs/security.md). Generated from
// syncjob/mongo_users.py by `make mongo-users` (python -m syncjob.mongo_users js); do not edit: a test
// compares them. Idempotent: creates or updates each role and user. The official mongo image runs it as
// root at first start; run it again as root after changing a password or upgrading (docs/security.md).
// Env: SYNCJOB_DATABASE (default tradingagents), SYNCJOB_OPERATOR_PASSWORD, SYNCJOB_API_PASSWORD,
// SYNCJOB_SYNC_PASSWORD.
const COMPONENTS = [
  {component: "operator", user: "syncjob-operator", role: "syncjobOperator", passwordEnv: "SYNCJOB_OPERATOR_PASSWORD", databaseActions: ["listCollections"],
   collections: {
     "scheduler_execution_tombstones": ["collMod", "createCollection", "createIndex", "find", "killCursors", "listIndexes"],
     "scheduler_executions": ["collMod", "createCollection", "createIndex", "find", "insert", "killCursors", "listIndexes", "remove", "update"],
     "scheduler_history": ["collMod", "createCollection", "createIndex", "insert", "listIndexes", "update"],
     "scheduler_metadata": ["createCollection", "createIndex"],
     "scheduler_run_slots": ["createCollection", "createIndex", "update"],
   }},
  {component: "api", user: "syncjob-api", role: "syncjobApi", passwordEnv: "SYNCJOB_API_PASSWORD", databaseActions: ["listCollections"],
   collections: {
     "scheduler_execution_tombstones": ["collMod", "createCollection", "createIndex", "insert", "listIndexes", "remove", "update"],
     "scheduler_executions": ["collMod", "createCollection", "createIndex", "find", "killCursors", "listIndexes", "remove", "update"],
     "scheduler_history": ["collMod", "createCollection", "createIndex", "find", "insert", "killCursors", "listIndexes", "update"],
     "scheduler_metadata": ["createCollection", "createIndex", "find", "insert", "killCursors", "update"],
     "scheduler_run_slots": ["createCollection", "createIndex", "update"],
   }},
  {component: "sync", user: "syncjob-sync", role: "syncjobSync", passwordEnv: "SYNCJOB_SYNC_PASSWORD", databaseActions: [],
   collections: {
     "data_source_status": ["createCollection", "createIndex", "find", "insert", "killCursors", "update"],
     "market_quotes": ["createCollection", "createIndex", "find", "insert", "killCursors", "update"],
     "scheduler_execution_tombstones": ["find", "killCursors"],
     "scheduler_executions": ["find", "insert", "killCursors", "update"],
     "scheduler_run_slots": ["find", "insert", "killCursors", "update"],
     "source_quotas": ["createCollection", "createIndex", "find", "insert", "killCursors", "update"],
     "stock_basic_info": ["createCollection", "createIndex", "find", "insert", "killCursors", "update"],
     "stock_daily_quotes": ["createCollection", "createIndex", "find", "insert", "killCursors", "update"],
     "stock_daily_suspensions": ["createCollection", "createIndex", "find", "insert", "killCursors", "update"],
     "stock_financial_data": ["createCollection", "createIndex", "find", "insert", "killCursors", "update"],
   }},
];
const dbName = process.env.SYNCJOB_DATABASE || "tradingagents";
const target = db.getSiblingDB(dbName);
for (const spec of COMPONENTS) {
  const privileges = Object.entries(spec.collections).map(
    ([collection, actions]) => ({resource: {db: dbName, collection: collection}, actions: actions}));
  if (spec.databaseActions.length > 0) {
    privileges.push({resource: {db: dbName, collection: ""}, actions: spec.databaseActions});
  }
  if (target.getRole(spec.role) === null) {
    target.createRole({role: spec.role, privileges: privileges, roles: []});
  } else {
    target.updateRole(spec.role, {privileges: privileges, roles: []});
  }
  const pwd = process.env[spec.passwordEnv];
  if (!pwd) {
    throw new Error(spec.passwordEnv + " is not set: the " + spec.component + "'s MongoDB password");
  }
  const roles = [{role: spec.role, db: dbName}];
  if (target.getUser(spec.user) === null) {
    target.createUser({user: spec.user, pwd: pwd, roles: roles});
  } else {
    target.updateUser(spec.user, {pwd: pwd, roles: roles});
  }
  print("syncjob: role " + spec.role + " and user " + spec.user + " in " + dbName);
}
