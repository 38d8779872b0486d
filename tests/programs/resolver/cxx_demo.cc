// C++ shapes for the resolver (tests/integration/test_resolver_cxx.py): a namespace, a class
// with a base class, methods reading members through `this`, a reference parameter, overloads
// and a function template with two instantiations.  Each probed line prints what it holds,
// so a trace can be compared with the truth.
#include <cstdio>
#include <cstdlib>

namespace shop {

struct Ledger {
    long entries;
};

class Cart : public Ledger {
public:
    explicit Cart(const char *owner) : items(0), total(0), owner(owner) { entries = 100; }
    __attribute__((noinline)) long add(int qty, const long &price);
    int items;
    long total;
    const char *owner;
};

long Cart::add(int qty, const long &price)
{
    std::printf("enter_add qty=%d price=%ld items=%d total=%ld entries=%ld owner=%s\n", qty, price, items, total,
                entries, owner);
    items += qty;
    total += qty * price;
    entries += 1;
    std::printf("add qty=%d price=%ld items=%d total=%ld entries=%ld\n", qty, price, items, total,
                entries);   /* MARK:cart_add */
    return total;
}

__attribute__((noinline)) long price(int cents)
{
    std::printf("price1 cents=%d\n", cents);
    return cents;
}

__attribute__((noinline)) long price(int cents, int count)
{
    std::printf("price2 cents=%d count=%d\n", cents, count);
    return (long)cents * count;
}

template <typename T>
__attribute__((noinline)) T scale(T value, int factor)
{
    T scaled = value * factor;
    std::printf("scale value=%ld factor=%d scaled=%ld\n", (long)value, factor, (long)scaled);   /* MARK:scale */
    return scaled;
}

}  // namespace shop

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? std::atoi(argv[1]) : 3;
    shop::Cart cart(argc > 2 ? argv[2] : "ann");
    long sum = 0;
    for (int i = 1; i <= rounds; i++) {
        long unit = 10 * i + 5;
        sum += cart.add(i, unit);
        sum += shop::price(i * 7) + shop::price(i * 3, i + 1);
        sum += shop::scale<int>(i, 3) + shop::scale<long>(1000L * i, 2);
    }
    std::printf("sum=%ld\n", sum);
    return 0;
}
