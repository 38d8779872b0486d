// Drives leveldb with known arguments for the resolver's runtime-truth checks
// (tests/helpers/libtruth.py): a database in a temporary directory, written,
// read, iterated, compacted, through the C++ and the C API.
#include <leveldb/c.h>
#include <leveldb/db.h>
#include <leveldb/write_batch.h>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <unistd.h>

int main()
{
    char directory[] = "/tmp/fleettrace-leveldb-XXXXXX";
    if (!mkdtemp(directory))
        return 1;
    leveldb::Options options;
    options.create_if_missing = true;
    options.write_buffer_size = 64 * 1024;
    leveldb::DB *db = nullptr;
    leveldb::Status status = leveldb::DB::Open(options, std::string(directory) + "/db", &db);
    if (!status.ok())
        return 2;
    std::string value;
    for (int i = 0; i < 3000; i++) {
        std::string key = "key" + std::to_string(i);
        db->Put(leveldb::WriteOptions(), key, std::string(100 + i % 50, 'a' + i % 26));
        if (i % 7 == 0)
            db->Get(leveldb::ReadOptions(), key, &value);
        if (i % 11 == 0)
            db->Delete(leveldb::WriteOptions(), key);
    }
    leveldb::WriteBatch batch;
    batch.Put("batch1", "one");
    batch.Delete("key5");
    db->Write(leveldb::WriteOptions(), &batch);
    leveldb::Iterator *it = db->NewIterator(leveldb::ReadOptions());
    long count = 0;
    for (it->SeekToFirst(); it->Valid(); it->Next())
        count++;
    delete it;
    db->CompactRange(nullptr, nullptr);
    delete db;
    char *error = nullptr;
    leveldb_options_t *c_options = leveldb_options_create();
    leveldb_options_set_create_if_missing(c_options, 1);
    leveldb_t *c_db = leveldb_open(c_options, (std::string(directory) + "/c").c_str(), &error);
    leveldb_writeoptions_t *write = leveldb_writeoptions_create();
    leveldb_put(c_db, write, "k", 1, "value", 5, &error);
    leveldb_readoptions_t *read = leveldb_readoptions_create();
    size_t length = 0;
    std::free(leveldb_get(c_db, read, "k", 1, &length, &error));
    leveldb_close(c_db);
    leveldb_destroy_db(c_options, (std::string(directory) + "/c").c_str(), &error);
    leveldb::DestroyDB(std::string(directory) + "/db", options);
    rmdir(directory);
    std::printf("%ld %zu\n", count, length);
    return 0;
}
