// Creates Rookery's own MongoDB user, with readWrite on its database only,
// from MONGO_DB_APP_USERNAME / MONGO_DB_APP_PASSWORD / MONGO_DB_APP_DATABASE.
// The official mongo image runs this once, as root, on an empty data volume.
const database = process.env.MONGO_DB_APP_DATABASE || "rookery";
const user = process.env.MONGO_DB_APP_USERNAME;
const password = process.env.MONGO_DB_APP_PASSWORD;
if (!user || !password) {
  throw new Error("MONGO_DB_APP_USERNAME and MONGO_DB_APP_PASSWORD must be set");
}
db.getSiblingDB(database).createUser({
  user,
  pwd: password,
  roles: [{ role: "readWrite", db: database }],
});
print(`created user ${user} with readWrite on ${database}`);
